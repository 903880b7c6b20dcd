"""Randomisation sanity checks of explanations (Adebayo et al. 2018; random logit, Sixt et al. 2020).

An explanation that stays the same when the model's learned parameters are
replaced by random ones cannot be explaining the model. Three checks:

* **model randomisation** (:func:`randomisation_check`): the layers of a
  fitted pipeline are randomised top-down, each drawn from its own fitted
  parameters' distribution so the model stays a valid model of the same shape
  (it passes :meth:`Pipeline.check_fitted`):

  1. ``svm``: the dual coefficients ``a_{t,i}`` permuted across the support
     vectors (one permutation per task; a linear model compressed to one weight
     vector per task has its weights permuted within each channel); the intercept
     drawn so that the
     randomised decision boundary passes through a random training point,
     ``b'_t = -g'_t(x_r)`` with ``g'_t`` the randomised expansion without bias
     and ``x_r`` a random reference point of the classifier;
  2. ``mkl`` (models that learned their kernel weights, ``mkl_norm`` not
     ``"uniform"``, with more than one channel): weights drawn from a flat
     Dirichlet distribution, scaled to the fitted weights' sum per task;
  3. the encoders' normalisation and pooling have no fitted parameters in
     bowlrp (their exponents are settings, not learned), so no layer;
  4. ``vocabulary`` (every channel): k-means words replaced by ``V`` distinct
     training descriptors drawn from the vocabulary's reservoir (projected by
     the vocabulary's PCA; without a large enough reservoir, each coordinate
     of the words is permuted across the words); GMM means drawn from the fitted
     mixture, variances and priors permuted across the components;
  5. ``pca`` (channels whose vocabulary has one): the components replaced by a
     uniformly random orthonormal frame of the same shape (QR of a Gaussian
     matrix, Haar measure); the mean is kept.

  ``mode="cascading"``: layer ``l`` of the curve has layers 1..l randomised;
  ``"independent"``: only layer ``l``. The draw of a layer is the same in both
  modes (one seed per layer from ``random_state``).
* **data randomisation** (:func:`data_randomisation_check`): the model's
  unfitted clone refitted on the training images with permuted labels.
* **random logit** (:func:`random_logit_check`): for models with more than two
  classes, a random other class explained instead of the original target.

Every explained map is compared with the original model's map of the same image
and class (the original's prediction when ``target`` is None, kept fixed for
every randomised model) by the measures of :mod:`bowlrp.evaluation.similarity`
(default ``"spearman"``: the rank correlation of ``|R|``, as Quantus 0.6's MPRT with
``abs=True``; ``"spearman-signed"`` keeps the sign, so a map that only flips sign
scores -1 there and 1 on ``"spearman"``).

**Pass rule.** Per layer, over images: mean similarity ``m`` and standard error
``se = std / sqrt(n)``. A layer *breaks* the explanation when ``m < threshold``
(default 0.5) and ``m + 2 se < 1`` (significantly below the similarity 1 of the
original map with itself). The cascading, data and random-logit checks pass when
their last layer (the fully randomised model, the refitted model, the other
class) breaks the explanation; the independent check when every layer does.
With one image ``se`` is undefined and nothing passes.

**Cost.** The randomised models are built once per layer (a copy of the
pipeline and one decision pass over the classifier's reference points), then
every image is explained once by the original and once by each randomised
model: ``layers + 1`` explanations per image, and the similarity measures of
``layers + 1`` maps (each map's features once, :mod:`bowlrp.evaluation.similarity`).
Measured on 102-pixel polygons tiles with three layers (BENCHMARKS.md): 4.2
explanations per image with one measure, 4.7 with the default four.
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone, is_outlier_detector
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._utils.atomic import atomic_write_bytes
from .._utils.validation import as_float_image, as_image_list
from ..image import colorize, normalize_heatmaps
from ..rules import parse_rule
from .explainers import METHOD_NAMES, explain_maps
from .runner import LRP_METHODS
from .similarity import SIMILARITY_NAMES, Measure, scikit_image_available, similarity_function

#: Explainers known by name (besides a callable ``explainer(model, images, targets)``).
NAMED_EXPLAINERS = METHOD_NAMES  # the names every metric of the suite understands
MODES = ("cascading", "independent")
#: Default threshold on the mean similarity below which a layer breaks the explanation.
DEFAULT_THRESHOLD = 0.5
SVM_LAYER = "svm"
MKL_LAYER = "mkl"
VOCABULARY_LAYER = "vocabulary"
PCA_LAYER = "pca"
LAYER_DESCRIPTIONS = {
    SVM_LAYER: "SVM dual coefficients (permuted across support vectors) and intercept",
    MKL_LAYER: "MKL kernel weights (flat Dirichlet, fitted sum)",
    VOCABULARY_LAYER: "vocabulary (k-means words from training descriptors; GMM means, variances, priors)",
    PCA_LAYER: "PCA components (random orthonormal frame)",
}

ExplainFunction = Callable[[object, list, list], list]


# -- the layers and their randomisation ---------------------------------------
def _refresh_candidates(clf) -> None:
    """Recompute the Taylor candidates' decisions after the expansion changed."""
    points = np.vstack([clf.reference_X_, clf.support_vectors_])
    clf.candidate_decisions_ = np.asarray(clf.decision_function(points), dtype=np.float64).reshape(
        len(points), -1
    )


def _randomise_svm(model, rng: np.random.Generator) -> None:
    clf = model.classifier_
    dual = np.array(clf.dual_coef_, dtype=np.float64, copy=True)
    n_tasks = dual.shape[0]
    if np.all(np.asarray(clf.support_) < 0):
        # a linear model compressed to one weight vector per task (KernelSVC.compress_linear):
        # no dual coefficients to permute, so the weights are permuted within each channel
        weights = np.array(clf.support_vectors_, copy=True)
        for s in clf.channel_slices_:
            for t in range(weights.shape[0]):
                weights[t, s] = weights[t, s][rng.permutation(s.stop - s.start)]
        clf.support_vectors_ = weights
    else:
        for t in range(n_tasks):
            dual[t] = dual[t, rng.permutation(dual.shape[1])]
        clf.dual_coef_ = dual
    clf.intercept_ = np.zeros(n_tasks)
    reference = clf.reference_X_
    g = np.asarray(clf.decision_function(reference), dtype=np.float64).reshape(len(reference), -1)
    rows = rng.integers(0, len(reference), size=n_tasks)
    clf.intercept_ = -g[rows, np.arange(n_tasks)]
    _refresh_candidates(clf)


def _randomise_mkl(model, rng: np.random.Generator) -> None:
    clf = model.classifier_
    weights = np.asarray(clf.kernel_weights_, dtype=np.float64)
    drawn = rng.dirichlet(np.ones(weights.shape[1]), size=weights.shape[0])
    clf.kernel_weights_ = drawn * weights.sum(axis=1, keepdims=True)
    _refresh_candidates(clf)


def _randomise_kmeans(vocabulary, rng: np.random.Generator) -> None:
    centers = np.asarray(vocabulary.cluster_centers_, dtype=np.float64)
    n_words = centers.shape[0]
    reservoir = vars(vocabulary).get("reservoir_")
    if reservoir is not None and len(reservoir) >= n_words:
        rows = rng.choice(len(reservoir), n_words, replace=False)
        vocabulary.cluster_centers_ = np.ascontiguousarray(
            vocabulary.project(np.asarray(reservoir[rows], dtype=np.float64))
        )
        return
    out = centers.copy()
    for j in range(out.shape[1]):
        out[:, j] = centers[rng.permutation(n_words), j]
    vocabulary.cluster_centers_ = out


def _randomise_gmm(vocabulary, rng: np.random.Generator) -> None:
    k = len(vocabulary.weights_)
    means = vocabulary.project(vocabulary.sample(k, rng))
    vocabulary.means_ = np.ascontiguousarray(means, dtype=np.float64)
    vocabulary.covariances_ = np.array(vocabulary.covariances_[rng.permutation(k)], dtype=np.float64)
    vocabulary.weights_ = np.array(vocabulary.weights_[rng.permutation(k)], dtype=np.float64)


def _randomise_vocabularies(model, rng: np.random.Generator) -> None:
    for name, encoder in zip(model.channel_names_, model.encoders_):
        vocabulary = encoder.vocabulary_
        state = vars(vocabulary)
        if "cluster_centers_" in state:
            _randomise_kmeans(vocabulary, rng)
        elif {"means_", "covariances_", "weights_"} <= state.keys():
            _randomise_gmm(vocabulary, rng)
        else:
            raise ValueError(
                f"channel {name!r}: cannot randomise a {type(vocabulary).__name__} vocabulary "
                "(k-means words or a GMM are supported)"
            )


def _randomise_pca(model, rng: np.random.Generator) -> None:
    for encoder in model.encoders_:
        encoder.vocabulary_.randomise_projection(rng)  # the vocabulary owns its PCA


@dataclass(frozen=True)
class Layer:
    """A randomisable layer: its name and how to randomise it in a copy of the pipeline."""

    name: str
    randomise: Callable[[object, np.random.Generator], None]

    @property
    def description(self) -> str:
        return LAYER_DESCRIPTIONS[self.name]


def _check_model(model) -> None:
    check_is_fitted(model, "classifier_")
    clf = model.classifier_
    if is_outlier_detector(clf):
        raise ValueError(
            f"the randomisation checks explain classifiers; this model's {type(clf).__name__} "
            "is an anomaly detector"
        )
    needed = ("dual_coef_", "intercept_", "kernel_weights_", "reference_X_", "support_vectors_")
    missing = [a for a in needed if a not in vars(clf)]
    if missing:
        raise ValueError(f"the model's {type(clf).__name__} has no fitted {', '.join(missing)}")


def model_layers(model) -> list[Layer]:
    """The randomisable layers of a fitted pipeline, top-down (see the module's docstring)."""
    _check_model(model)
    clf = model.classifier_
    layers = [Layer(SVM_LAYER, _randomise_svm)]
    if clf.kernel_weights_.shape[1] > 1 and clf.mkl_norm != "uniform":
        layers.append(Layer(MKL_LAYER, _randomise_mkl))
    layers.append(Layer(VOCABULARY_LAYER, _randomise_vocabularies))
    if any(enc.vocabulary_.has_projection for enc in model.encoders_):
        layers.append(Layer(PCA_LAYER, _randomise_pca))
    return layers


def layer_seeds(random_state, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent seeds of one ``random_state`` (an int or None): one per randomised layer."""
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        raise ValueError(f"random_state must be an int or None, got {type(random_state).__name__}")
    return np.random.SeedSequence(random_state).spawn(n)


def randomised_models(
    model, mode: str = "cascading", random_state: int | None = 0
) -> list[tuple[str, object]]:
    """Copies of a fitted pipeline with layers randomised, one per layer, top-down.

    Parameters
    ----------
    model : fitted Pipeline
        Not modified: every randomised model is a deep copy.
    mode : {"cascading", "independent"}
        Cascading: the ``l``-th model has layers 1..l randomised; independent:
        layer ``l`` only.
    random_state : int or None
        Seeds one draw per layer (the same draw in both modes).

    Returns
    -------
    list of (layer name, Pipeline)
        Each model passes ``check_fitted`` (checked here).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    layers = model_layers(model)
    seeds = layer_seeds(random_state, len(layers))
    out = []
    current = copy.deepcopy(model) if mode == "cascading" else None
    for layer, seed in zip(layers, seeds):
        rng = np.random.default_rng(seed)
        if mode == "cascading":
            layer.randomise(current, rng)
            current.check_fitted(f"randomised {layer.name}")
            out.append((layer.name, copy.deepcopy(current)))
        else:
            one = copy.deepcopy(model)
            layer.randomise(one, rng)
            one.check_fitted(f"randomised {layer.name}")
            out.append((layer.name, one))
    return out


# -- explainers ---------------------------------------------------------------
class _LRPExplainer:
    """``Pipeline.explain`` with given rules, one image and target at a time."""

    def __init__(self, rules):
        self.rules = rules

    def explanations(self, model, images, targets) -> list:
        return [model.explain([im], target=t, rules=self.rules)[0] for im, t in zip(images, targets)]

    def __call__(self, model, images, targets) -> list[np.ndarray]:
        return [e.heatmap for e in self.explanations(model, images, targets)]


def _named_explainer(name: str, seed: int) -> ExplainFunction:
    """A method of :func:`~bowlrp.evaluation.explainers.explain_maps`, one target per image."""

    def explain(model, images, targets):
        return explain_maps(model, images, name, seed=seed, targets=targets)

    explain.__name__ = name
    return explain


def resolve_explainer(explainer, random_state: int | None = 0) -> tuple[str, ExplainFunction]:
    """``(name, explain(model, images, targets) -> list of (H, W) maps)`` for a name or a callable.

    Names: those of :func:`~bowlrp.evaluation.explainers.explain_maps`
    (:data:`NAMED_EXPLAINERS`): ``"lrp"`` (the model's default rules), the LRP variants of
    ``bowlrp-evaluate`` (``"lrp-eps1"``, ``"lrp-ab21"``, ...), ``"occlusion"``
    (9 x 9 blocks, uniform noise), the peers and ``"random"`` (seeded noise,
    independent of the model). A callable follows Quantus's ``explain_func`` convention: it gets
    the model, the list of float images and one target label per image.
    """
    seed = 0 if random_state is None else int(random_state)
    if callable(explainer):
        return getattr(explainer, "__name__", type(explainer).__name__), explainer
    if explainer == "lrp":
        return "lrp", _LRPExplainer(None)
    if explainer in LRP_METHODS:
        return explainer, _LRPExplainer(parse_rule(LRP_METHODS[explainer]))
    if explainer in NAMED_EXPLAINERS:  # occlusion, random, the peers: as every metric explains
        return explainer, _named_explainer(explainer, seed)
    raise ValueError(
        f"unknown explainer {explainer!r}; give a callable or one of {', '.join(NAMED_EXPLAINERS)}"
    )


def _explain(explain: ExplainFunction, name: str, model, images: list, targets: list) -> list[np.ndarray]:
    maps = explain(model, images, targets)
    if not isinstance(maps, (list, tuple)) or len(maps) != len(images):
        got = len(maps) if isinstance(maps, (list, tuple)) else type(maps).__name__
        raise ValueError(
            f"explainer {name!r} returned {got} maps for {len(images)} images; return a list of (H, W) maps"
        )
    out = []
    for im, m in zip(images, maps):
        m = np.asarray(m, dtype=np.float64)
        if m.shape != im.shape[:2]:
            raise ValueError(
                f"explainer {name!r} returned a map of shape {m.shape} for an image of {im.shape[:2]}"
            )
        out.append(m)
    return out


# -- targets -----------------------------------------------------------------
def predicted_targets(model, images: list) -> list:
    """The class each image is explained for when no target is given: the model's prediction
    (the top-scoring label of a multi-label model), as ``Pipeline.explain`` picks it."""
    F = np.asarray(model.decision_function(images))
    classes = model.classifier_.classes_
    labels = classes[(F > 0).astype(int)] if F.ndim == 1 else classes[np.argmax(F, axis=1)]
    return list(labels)


def _targets(model, images: list, target) -> list:
    if target is None:
        return predicted_targets(model, images)
    if isinstance(target, (list, tuple, np.ndarray)):
        if len(target) != len(images):
            raise ValueError(
                f"{len(target)} targets for {len(images)} images: give one per image or one for all"
            )
        return [model.resolve_target(t) for t in target]
    return [model.resolve_target(target)] * len(images)


def _original_targets(model, images: list, target, explainers) -> tuple[list, list | None]:
    """Targets per image and, when they came from it, the first explainer's original maps.

    With ``target=None`` and LRP first, the original explanations say which class
    they explained (the prediction), so no separate forward pass is spent on it.
    """
    first = explainers[0][1]
    if target is None and isinstance(first, _LRPExplainer):
        found = first.explanations(model, images, [None] * len(images))
        return [e.target for e in found], [e.heatmap for e in found]
    return _targets(model, images, target), None


# -- the result ----------------------------------------------------------------
def _stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer: mean, standard error and number of images of (layers, images) values."""
    n = np.sum(np.isfinite(values), axis=1)
    mean = np.nanmean(values, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(n > 1, np.nanstd(values, axis=1, ddof=min(1, values.shape[1] - 1)) / np.sqrt(n), np.nan)
    return mean, se, n


CHECK_WORDS = {
    "cascading": "cascading model-randomisation check",
    "independent": "independent model-randomisation check",
    "data": "data-randomisation check",
    "logit": "random-logit check",
}


@dataclass
class RandomisationResult:
    """What a randomisation check found.

    Attributes
    ----------
    check : {"cascading", "independent", "data", "logit"}
    explainer : str
    layers : list of str
        The randomised layers, top-down (data: ``["labels"]``; logit: ``["logit"]``).
    similarity_name : str
        The measure ``similarity`` and ``passed`` report.
    measures : dict of str -> ndarray (layers, images)
        Every measure computed (all of :data:`SIMILARITY_NAMES` when scikit-image is
        installed, the Spearman ones otherwise).
    threshold : float
    targets : list
        The class explained for each image (fixed across the randomised models).
    maps : list of ndarray (layers + 1, H, W)
        For the first ``n_maps`` images: the original map, then each layer's.
    images : list of ndarray
        Those images.
    n_explanations : int
        Explanations computed (``(layers + 1) * images``).
    seconds : float
        Wall time of the check (building the models included).
    other_targets : list or None
        The random-logit check's other classes.
    """

    check: str
    explainer: str
    layers: list[str]
    similarity_name: str
    measures: dict[str, np.ndarray]
    threshold: float
    targets: list
    maps: list[np.ndarray] = field(repr=False)
    images: list[np.ndarray] = field(repr=False)
    n_explanations: int = 0
    seconds: float = 0.0
    other_targets: list | None = None

    @property
    def similarity(self) -> np.ndarray:
        """Similarity of each randomised map to the original, shape (layers, images)."""
        return self.measures[self.similarity_name]

    @property
    def n_images(self) -> int:
        return int(self.similarity.shape[1])

    def mean(self, measure: str | None = None) -> np.ndarray:
        """Mean similarity per layer over images, shape (layers,)."""
        return _stats(self.measures[measure or self.similarity_name])[0]

    def stderr(self, measure: str | None = None) -> np.ndarray:
        """Standard error of the mean per layer, shape (layers,) (NaN for one image)."""
        return _stats(self.measures[measure or self.similarity_name])[1]

    def layer_breaks(self, measure: str | None = None) -> np.ndarray:
        """Per layer: ``mean < threshold`` and ``mean + 2 se < 1`` (bool, shape (layers,))."""
        mean, se, _ = _stats(self.measures[measure or self.similarity_name])
        with np.errstate(invalid="ignore"):
            return (mean < self.threshold) & (mean + 2 * se < 1.0)

    def passed_for(self, measure: str) -> bool:
        breaks = self.layer_breaks(measure)
        return bool(breaks.all() if self.check == "independent" else breaks[-1])

    @property
    def passed(self) -> bool:
        """Whether the explainer passes the check on :attr:`similarity_name` (module docstring)."""
        return self.passed_for(self.similarity_name)

    @property
    def passed_by_measure(self) -> dict[str, bool]:
        return {m: self.passed_for(m) for m in self.measures}

    def verdict(self, measure: str | None = None) -> str:
        """One sentence in words: does the explainer pass, by how much."""
        measure = measure or self.similarity_name
        mean, se, n = _stats(self.measures[measure])
        what = CHECK_WORDS[self.check]
        verb = "passes" if self.passed_for(measure) else "fails"
        head = f"{self.explainer} {verb} the {what} ({measure})"

        def number(layer: int) -> str:
            return f"{mean[layer]:.2f} ± {se[layer]:.2f} (n = {n[layer]})"

        if n.max() < 2:
            return f"{head}: one image gives no standard error; explain at least two."
        if self.check == "independent":
            kept = [i for i, b in enumerate(self.layer_breaks(measure)) if not b]
            if not kept:
                worst = int(np.nanargmax(mean))
                return (
                    f"{head}: randomising any one layer alone brings the similarity to the original "
                    f"map below {self.threshold:g} (highest: {self.layers[worst]}, {number(worst)})."
                )
            parts = ", ".join(f"{self.layers[i]} {number(i)}" for i in kept)
            return (
                f"{head}: randomising {'this layer' if len(kept) == 1 else 'these layers'} alone leaves "
                f"the maps similar to the original (not below {self.threshold:g}): {parts}."
            )
        change = {
            "cascading": f"with every layer down to {self.layers[-1]} randomised",
            "data": "with the model refitted on permuted labels",
            "logit": "explaining a random other class",
        }[self.check]
        if self.passed_for(measure):
            return (
                f"{head}: {change}, the similarity to the original map falls to {number(-1)}, "
                f"below {self.threshold:g}."
            )
        return (
            f"{head}: {change}, the similarity to the original map stays at {number(-1)}, "
            f"not significantly below {self.threshold:g}: the maps do not follow the change."
        )

    def to_dict(self) -> dict:
        """A JSON-ready summary: per measure and layer the mean, standard error, n, and the verdicts."""
        out = {
            "check": self.check,
            "explainer": self.explainer,
            "layers": list(self.layers),
            "similarity": self.similarity_name,
            "threshold": self.threshold,
            "rule": (
                "a layer breaks the explanation when mean similarity < threshold and mean + 2 se < 1; "
                + (
                    "every layer must break it"
                    if self.check == "independent"
                    else "the last layer must break it"
                )
            ),
            "n_images": self.n_images,
            "n_explanations": self.n_explanations,
            "seconds": self.seconds,
            "passed": self.passed,
            "verdict": self.verdict(),
            "measures": {},
        }
        for m, values in self.measures.items():
            mean, se, n = _stats(values)
            out["measures"][m] = {
                "mean": [float(v) for v in mean],
                "stderr": [None if not np.isfinite(v) else float(v) for v in se],
                "n": [int(v) for v in n],
                "passed": self.passed_for(m),
                "verdict": self.verdict(m),
            }
        return out


# -- the checks ----------------------------------------------------------------
def _measure_names(similarity, measures=None) -> tuple[str, dict[str, Callable]]:
    """The chosen measure's name and every measure to compute (the chosen one included)."""
    if callable(similarity):
        name = getattr(similarity, "__name__", "similarity")
        chosen = {name: similarity}
    else:
        similarity_function(similarity)  # an unknown name fails here, before any work
        chosen = {}
        name = similarity
    if measures is None:
        names = [
            m for m in SIMILARITY_NAMES if m in ("spearman", "spearman-signed") or scikit_image_available()
        ]
    else:
        names = [measures] if isinstance(measures, str) else list(measures)
        for m in names:
            similarity_function(m)
    if isinstance(similarity, str) and similarity not in names:
        names.append(similarity)
    needs_skimage = [m for m in names if m in ("ssim", "hog")]
    if needs_skimage and not scikit_image_available():
        raise ImportError(
            f'the {needs_skimage[0]!r} similarity needs scikit-image: pip install "bowlrp[compare]"'
        )
    out = {m: similarity_function(m) for m in SIMILARITY_NAMES if m in names}
    out.update(chosen)
    return name, out


def _prepare_images(images) -> list[np.ndarray]:
    out = [as_float_image(im) for im in as_image_list(images)]
    if not out:
        raise ValueError("no images to explain")
    return out


def _explainers(explainer, random_state) -> tuple[list[tuple[str, ExplainFunction]], bool]:
    """The (name, function) of each explainer asked for, and whether a list was given."""
    many = isinstance(explainer, (list, tuple))
    resolved = [resolve_explainer(e, random_state) for e in (explainer if many else [explainer])]
    if not resolved:
        raise ValueError("no explainer given")
    names = [n for n, _ in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"explainers must have distinct names, got {names}")
    return resolved, many


def compare_variants(
    check: str,
    explainers: list[tuple[str, ExplainFunction]],
    model,
    images: list,
    targets: list,
    variants: Sequence[tuple[str, object, list]],
    similarity,
    threshold: float,
    n_maps: int,
    verbose: bool,
    started: float,
    first_original: list | None = None,
    measures=None,
) -> list[RandomisationResult]:
    """Explain every image with the original model and each variant; compare the maps.

    Every explainer sees the same variants (built once), so comparing explainers
    costs their explanations only.
    """
    name, measures = _measure_names(similarity, measures)
    n, n_layers = len(images), len(variants)
    keep = min(int(n_maps), n)
    total = (n_layers + 1) * n * len(explainers)
    bar = tqdm(total=total, desc=f"{check} check", disable=not verbose, leave=False)
    setup = time.perf_counter() - started
    out = []
    for k, (explainer_name, explain) in enumerate(explainers):
        began = time.perf_counter()
        values = {m: np.full((n_layers, n), np.nan) for m in measures}
        if k == 0 and first_original is not None:
            original = [np.asarray(m, dtype=np.float64) for m in first_original]
        else:
            original = _explain(explain, explainer_name, model, images, targets)
        bar.update(n)
        # features of the original maps (ranks, HOG, ...) computed once, met by every layer's map
        features = {
            m: [f.features(a) for a in original] for m, f in measures.items() if isinstance(f, Measure)
        }
        kept = [np.empty((n_layers + 1, *original[i].shape)) for i in range(keep)]
        for i in range(keep):
            kept[i][0] = original[i]
        for layer, (_, variant, variant_targets) in enumerate(variants):
            maps = _explain(explain, explainer_name, variant, images, variant_targets)
            for i, (a, b) in enumerate(zip(original, maps)):
                for m, f in measures.items():
                    if m in features:
                        values[m][layer, i] = f.compare(features[m][i], f.features(b))
                    else:
                        values[m][layer, i] = float(f(a, b))
                if i < keep:
                    kept[i][layer + 1] = b
            bar.update(n)
        out.append(
            RandomisationResult(
                check=check,
                explainer=explainer_name,
                layers=[v[0] for v in variants],
                similarity_name=name,
                measures=values,
                threshold=float(threshold),
                targets=list(targets),
                maps=kept,
                images=images[:keep],
                n_explanations=(n_layers + 1) * n,
                seconds=setup + time.perf_counter() - began,
            )
        )
    bar.close()
    return out


def randomisation_check(
    model,
    images,
    explainer="lrp",
    target=None,
    mode: str = "cascading",
    similarity="spearman",
    random_state: int | None = 0,
    threshold: float = DEFAULT_THRESHOLD,
    n_maps: int = 4,
    verbose: bool = True,
    measures=None,
) -> RandomisationResult | list[RandomisationResult]:
    """Model-randomisation sanity check: do the explainer's maps change when the model's layers
    are randomised? (Adebayo et al. 2018; layers and pass rule in the module's docstring.)

    Parameters
    ----------
    model : fitted Pipeline
        Not modified (randomised models are copies).
    images : image, path or list of them
    explainer : str, callable, or a list of them
        A name of :data:`NAMED_EXPLAINERS` or ``explainer(model, images, targets) -> list of
        (H, W) maps`` (float images, one target label per image). A list compares
        several explainers on the same randomised models (built once) and returns
        one result per explainer, in order.
    target : class label, name, index, one per image, or None
        None: each image's predicted class under the original model.
    mode : {"cascading", "independent"}
    similarity : str or callable
        The measure of ``.similarity`` and ``.passed``: ``"spearman"`` (of ``|R|``),
        ``"spearman-signed"`` (of ``R``), ``"ssim"``, ``"hog"``, or ``f(a, b) -> float``.
        All named measures are computed (``.measures``).
    random_state : int or None
        Seeds the layers' draws (and the named explainers' noise).
    threshold : float
        A layer breaks the explanation when the mean similarity is below it.
    n_maps : int
        Images whose maps are kept for figures (:func:`plot_randomisation`).
    verbose : bool
        Progress bar.
    measures : sequence of str or None
        The measures computed besides ``similarity`` (``.measures``); None: all of
        :data:`SIMILARITY_NAMES` (SSIM and HOG when scikit-image is installed).
        Each costs a little per map (BENCHMARKS.md); ``("spearman",)`` is cheapest.

    Returns
    -------
    RandomisationResult (a list of them for a list of explainers)
        ``.layers`` (top-down), ``.similarity`` (layers, images), ``.passed``, ``.verdict()``.
    """
    started = time.perf_counter()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _measure_names(similarity, measures)
    explainers, many = _explainers(explainer, random_state)
    images = _prepare_images(images)
    models = randomised_models(model, mode, random_state)  # a model that cannot be randomised fails first
    targets, first = _original_targets(model, images, target, explainers)
    variants = [(layer, m, targets) for layer, m in models]
    out = compare_variants(
        mode,
        explainers,
        model,
        images,
        targets,
        variants,
        similarity,
        threshold,
        n_maps,
        verbose,
        started,
        first,
        measures,
    )
    return out if many else out[0]


def data_randomisation_check(
    model,
    train_images,
    train_labels,
    images,
    explainer="lrp",
    target=None,
    similarity="spearman",
    random_state: int | None = 0,
    threshold: float = DEFAULT_THRESHOLD,
    n_maps: int = 4,
    verbose: bool = True,
    measures=None,
) -> RandomisationResult | list[RandomisationResult]:
    """Data-randomisation check: refit the model's unfitted clone on permuted labels and compare.

    ``train_images`` / ``train_labels`` are what the model was trained on (labels
    may be a multi-label indicator matrix: its rows are permuted). The refit costs
    one :meth:`Pipeline.fit` (once for a list of explainers). Other parameters as
    :func:`randomisation_check`; the result has one layer, ``"labels"``.
    """
    started = time.perf_counter()
    _measure_names(similarity, measures)
    check_is_fitted(model, "classifier_")
    explainers, many = _explainers(explainer, random_state)
    images = _prepare_images(images)
    y = np.asarray(train_labels)
    train = as_image_list(train_images)
    if len(train) != len(y):
        raise ValueError(f"{len(train)} training images but {len(y)} labels")
    targets, first = _original_targets(model, images, target, explainers)
    rng = np.random.default_rng(layer_seeds(random_state, 1)[0])
    refit = clone(model).fit(train, y[rng.permutation(len(y))])
    out = compare_variants(
        "data",
        explainers,
        model,
        images,
        targets,
        [("labels", refit, targets)],
        similarity,
        threshold,
        n_maps,
        verbose,
        started,
        first,
        measures,
    )
    return out if many else out[0]


def random_logit_check(
    model,
    images,
    explainer="lrp",
    target=None,
    similarity="spearman",
    random_state: int | None = 0,
    threshold: float = DEFAULT_THRESHOLD,
    n_maps: int = 4,
    verbose: bool = True,
    measures=None,
) -> RandomisationResult | list[RandomisationResult]:
    """Random-logit check (Sixt et al. 2020): explain a random other class and compare.

    Needs a model with more than two classes (the other class of a binary model
    is explained by the negated map). Parameters as :func:`randomisation_check`;
    the result has one layer, ``"logit"``, and ``.other_targets``.
    """
    started = time.perf_counter()
    _measure_names(similarity, measures)
    check_is_fitted(model, "classifier_")
    classes = model.classifier_.classes_
    if len(classes) < 3:
        raise ValueError(
            f"the random-logit check needs more than two classes, the model has {len(classes)} "
            "(a binary model's other class is the negated map)"
        )
    explainers, many = _explainers(explainer, random_state)
    images = _prepare_images(images)
    targets, first = _original_targets(model, images, target, explainers)
    rng = np.random.default_rng(layer_seeds(random_state, 1)[0])
    others = []
    for t in targets:
        choices = [c for c in classes if c != t]
        others.append(choices[int(rng.integers(len(choices)))])
    out = compare_variants(
        "logit",
        explainers,
        model,
        images,
        targets,
        [("logit", model, others)],
        similarity,
        threshold,
        n_maps,
        verbose,
        started,
        first,
        measures,
    )
    for result in out:
        result.other_targets = others
    return out if many else out[0]


# -- the figure ----------------------------------------------------------------
def plot_randomisation(result: RandomisationResult, path=None, n_images: int = 3, measures=None) -> bytes:
    """Per-layer similarity curves (mean ± standard error) over the maps at each layer, as PNG.

    Top: one curve per measure, from the original (similarity 1) through each
    randomised layer, with the threshold dashed. Below: for up to ``n_images``
    images, the image, the original map and each layer's map (each scaled by its
    own 99.5th percentile of ``|R|``, red positive, blue negative).

    Returns the PNG bytes; with ``path``, also writes them there atomically.
    """
    import matplotlib  # with pyplot below: the Agg backend first, only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen before pyplot loads

    measures = list(result.measures) if measures is None else list(measures)
    rows = min(int(n_images), len(result.maps))
    columns = len(result.layers) + 2
    fig = plt.figure(figsize=(max(7.0, 1.6 * columns), 3.4 + 1.6 * rows))
    grid = fig.add_gridspec(1 + rows, columns, height_ratios=[2.2] + [1.0] * rows)
    ax = fig.add_subplot(grid[0, :])
    xs = np.arange(len(result.layers) + 1)
    for m in measures:
        mean, se, _ = _stats(result.measures[m])
        y = np.concatenate([[1.0], mean])
        e = np.concatenate([[0.0], np.nan_to_num(se)])
        verdict = "passes" if result.passed_for(m) else "fails"
        ax.errorbar(xs, y, yerr=e, marker="o", capsize=3, label=f"{m} ({verdict})")
    ax.axhline(result.threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(xs, ["original", *result.layers])
    ax.set_ylabel("similarity to the original map")
    ax.set_ylim(min(-0.2, ax.get_ylim()[0]), 1.05)
    ax.set_title(f"{result.explainer}: {CHECK_WORDS[result.check]} (n = {result.n_images} images)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    titles = ["image", "original", *result.layers]
    for r in range(rows):
        image = result.images[r]
        panels = [image] + normalize_heatmaps(list(result.maps[r]))
        for c, panel in enumerate(panels):
            axc = fig.add_subplot(grid[1 + r, c])
            if c == 0:
                axc.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1)
            else:
                axc.imshow(colorize(panel, "bwr"))
            axc.set_xticks([])
            axc.set_yticks([])
            if r == 0:
                axc.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    data = buffer.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data
