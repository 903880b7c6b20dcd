"""The end-to-end classifier: descriptors -> vocabulary -> mapping/pooling -> kernel SVM.

A :class:`Pipeline` has one or more feature *channels*, each its own
extractor (layer 2) and encoder (layer 3), feeding one kernel of a
:class:`~bowlrp.KernelSVC` (layer 4, with multiple kernel learning when
there are several channels).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._utils.parallel import map_images
from ._utils.validation import as_float_image, as_image_list
from .classifier.svm import KernelChannelsMixin, KernelSVC
from .config import build_stages, load_config, resolve_overrides
from .descriptors.base import ExtractorMixin
from .descriptors.geometry import Descriptors
from .encoding.base import Encoder, EncodingTrace
from .exceptions import ModelFileError
from .explanation import check_tiling, class_names, explain_tiled, explain_trace, resolve_target

_CACHE_BYTES = 1 << 30  # keep training descriptors in memory below this size


@dataclass
class ChannelTrace:
    """Forward intermediates of one channel for one image."""

    name: str
    descriptors: Descriptors
    encoding: EncodingTrace


@dataclass
class ImageTrace:
    """Forward intermediates of one image: per channel, and the feature vector."""

    image_shape: tuple[int, int]
    channels: list[ChannelTrace]
    features: np.ndarray
    image: np.ndarray | None = None  # the float image, for pixel rules that read it


def _check_channels(channels) -> list[tuple]:
    if not isinstance(channels, (list, tuple)) or not channels:
        raise ValueError("channels must be a non-empty list of (name, extractor, encoder)")
    out = []
    for item in channels:
        if not (isinstance(item, (list, tuple)) and len(item) == 3):
            raise ValueError(f"each channel must be (name, extractor, encoder), got {item!r}")
        out.append(tuple(item))
    names = [c[0] for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}")
    return out


def _as_seed(random_state):
    """An int seed stays itself; a RandomState is consumed once; None stays None."""
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return random_state
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def seeded(estimator, random_state):
    """Give every nested ``random_state`` left at None the pipeline's seed (in place)."""
    seed = _as_seed(random_state)
    if seed is None:
        return estimator
    unset = {
        k: seed
        for k, v in estimator.get_params(deep=True).items()
        if (k == "random_state" or k.endswith("__random_state")) and v is None
    }
    if unset:
        estimator.set_params(**unset)
    return estimator


def _describe_and_sample(extractor, image, seed, per_image, keep):
    """Descriptors of one image: (random subset of at most ``per_image``, all of them or None)."""
    d = extractor.describe(image)
    sample = (
        d
        if len(d) <= per_image
        else d.subset(np.sort(np.random.RandomState(seed).choice(len(d), per_image, replace=False)))
    )
    return sample, (d if keep else None)


def _describe_pair(extractor, pair, per_image, keep):
    return _describe_and_sample(extractor, pair[0], pair[1], per_image, keep)


def _stream_sample(extractor, images, seeds, per_image, cache_bytes, n_jobs, desc, verbose, chunk: int = 32):
    """Describe images chunk by chunk, keeping a per-image sample for the vocabulary.

    Returns (samples, all descriptors or None): all descriptors are kept only
    while their total stays below ``cache_bytes``.
    """
    samples, full, total = [], [], 0
    keep = cache_bytes > 0
    bar = tqdm(total=len(images), desc=desc, disable=not (verbose and len(images) > 1), leave=False)
    for start in range(0, len(images), chunk):
        pairs = list(zip(images[start : start + chunk], seeds[start : start + chunk]))
        job = partial(_describe_pair, extractor, per_image=per_image, keep=keep)
        out = map_images(job, pairs, n_jobs, desc, False)
        for sample, d in out:
            samples.append(sample)
            if keep:
                total += d.data.nbytes
                keep = total <= cache_bytes
                full.append(d)
        if not keep:
            full = []
        bar.update(len(pairs))
    bar.close()
    return samples, (full if keep else None)


def _vocabulary_budget(encoder) -> int:
    vocab = getattr(encoder, "vocabulary", None)
    cap = getattr(vocab, "max_descriptors", None)
    return int(cap) if cap else 100_000


class Pipeline(ClassifierMixin, BaseEstimator):
    """Bag-of-Words / Fisher-vector image classifier that can explain its decisions.

    Parameters
    ----------
    channels : list of (name, extractor, encoder)
        Feature channels, e.g. ``[("sift", DenseSIFT(...), RankMapping(...))]``.
    classifier : KernelSVC or None
        The kernel machine; its ``kernel`` may be a list with one kernel per
        channel. ``channel_sizes`` is set by the pipeline. None: HIK SVM.
    n_jobs : int or None
        Images processed in parallel (joblib).
    verbose : bool
        Progress bars for long lists of images.
    random_state : int or None
        Sampling of descriptors for the vocabularies.
    config : dict or None
        The configuration the pipeline was built from (kept in model files).
    vocabulary_images : int or None
        Describe at most this many training images (a random subset drawn from
        ``random_state``) for the vocabularies' descriptor sample; None: every image.
        The sample's size (the vocabularies' ``max_descriptors``) is the same either
        way, drawn from fewer images; at PASCAL VOC 2007 scale (5,011 images, a
        1M-descriptor sample) describing every image for it costs as much as a fifth
        of the training features. A data set of at most this many images is
        sampled exactly as with None.

    Attributes
    ----------
    extractors_, encoders_ : list
        Fitted stages per channel.
    classifier_ : KernelSVC
    channel_sizes_ : list of int
    classes_ : ndarray
    """

    #: Model files saved before the parameter existed carry no ``vocabulary_images``;
    #: they read this default (their vocabularies were sampled from every image).
    vocabulary_images = None

    def __init__(
        self,
        channels,
        classifier=None,
        n_jobs=None,
        verbose=False,
        random_state=None,
        config=None,
        vocabulary_images=None,
    ):
        self.channels = channels
        self.classifier = classifier
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state
        self.config = config
        self.vocabulary_images = vocabulary_images

    @classmethod
    def from_config(cls, config, overrides: dict | None = None, **kwargs) -> Pipeline:
        """Build an unfitted pipeline from a config: shipped name, YAML path or dict.

        Parameters
        ----------
        config : str, Path or dict
            ``"polygons_hik"`` (a config shipped with bowlrp, found from any
            directory), a path to a YAML file, or a config dict.
        overrides : dict, optional
            Parameters to change, in the names of :meth:`get_params` with ``__``
            or ``.`` as separator, e.g. ``{"sift-scale2.encoder.vocabulary.n_words": 32,
            "classifier__C": 10}``. A bare name that is not a parameter of the
            pipeline itself (``n_words=32``) sets every nested parameter of that
            name. Recorded in ``config["overrides"]`` (after the file's own
            ``overrides:``, which they replace name by name).
        **kwargs
            More overrides (for names that are valid Python identifiers).

        Raises
        ------
        ConfigError
            Invalid config, an override that names no parameter, or an override
            value the config's schema refuses: overrides are checked with the
            file when it is read (:func:`bowlrp.config.resolve_overrides`), before
            anything is built or fitted.
        """
        changes = {**overrides, **kwargs} if isinstance(overrides, dict) and kwargs else overrides or kwargs
        cfg = load_config(config, changes)  # refuses overrides that are not a mapping
        channels, classifier = build_stages(cfg)
        pipe = cls(
            channels=channels,
            classifier=classifier,
            n_jobs=cfg.get("n_jobs"),
            random_state=cfg.get("random_state"),
            config=cfg,
            vocabulary_images=cfg.get("vocabulary_images"),
        )
        resolved = resolve_overrides(cfg)
        if resolved:
            pipe.set_params(**resolved)
        return pipe

    # -- nested parameters (scikit-learn's ``__`` convention) ------------------
    def get_params(self, deep: bool = True) -> dict:
        """Parameters; with ``deep``, channel parts as ``<channel>__extractor__<param>``.

        Every channel ``(name, extractor, encoder)`` exposes ``<name>__extractor``
        and ``<name>__encoder`` and their own nested parameters (for example
        ``sift__encoder__vocabulary__n_words``); the classifier's are
        ``classifier__<param>`` as in :class:`sklearn.pipeline.Pipeline`.
        """
        out = super().get_params(deep=False)
        if not deep:
            return out
        if self.classifier is not None:
            out.update({f"classifier__{k}": v for k, v in self.classifier.get_params(True).items()})
        for item in self.channels if isinstance(self.channels, (list, tuple)) else []:
            if not (isinstance(item, (list, tuple)) and len(item) == 3):
                continue
            name, extractor, encoder = item
            for part, est in (("extractor", extractor), ("encoder", encoder)):
                out[f"{name}__{part}"] = est
                if hasattr(est, "get_params"):
                    out.update({f"{name}__{part}__{k}": v for k, v in est.get_params(True).items()})
        return out

    def set_params(self, **params) -> Pipeline:
        """Set parameters, including nested ones named as in :meth:`get_params`."""
        own = super().get_params(deep=False)
        channel_names = [c[0] for c in _check_channels(self.channels)] if "channels" not in params else None
        if "channels" in params:
            self.channels = params.pop("channels")
            channel_names = [c[0] for c in _check_channels(self.channels)]
        nested: dict[str, dict] = {}
        for key, value in params.items():
            head, sep, rest = key.partition("__")
            if not sep:
                if key not in own:
                    raise ValueError(
                        f"invalid parameter {key!r} for Pipeline; "
                        f"valid: {sorted(self.get_params(deep=True))[:20]}…"
                    )
                setattr(self, key, value)
            elif head == "classifier":
                nested.setdefault("classifier", {})[rest] = value
            elif head in channel_names:
                nested.setdefault(head, {})[rest] = value
            else:
                raise ValueError(
                    f"invalid parameter {key!r}: no channel or step named {head!r} "
                    f"(channels: {channel_names})"
                )
        if "classifier" in nested:
            if self.classifier is None:
                self.classifier = KernelSVC()
            self.classifier.set_params(**nested.pop("classifier"))
        channels = [list(c) for c in self.channels]
        for name, sub in nested.items():
            item = channels[channel_names.index(name)]
            for key, value in sub.items():
                part, sep, rest = key.partition("__")
                if part not in ("extractor", "encoder"):
                    raise ValueError(
                        f"invalid parameter {name}__{key!r}: a channel has 'extractor' and 'encoder'"
                    )
                index = 1 if part == "extractor" else 2
                if sep:
                    item[index].set_params(**{rest: value})
                else:
                    item[index] = value
        self.channels = [tuple(c) for c in channels]
        return self

    # -- fitting -------------------------------------------------------------
    def fit(self, images, y=None):
        """Fit vocabularies on the training images' descriptors, then the SVM (y=None: a detector).

        Equivalent to :meth:`fit_vocabularies`, :meth:`features` and
        :meth:`fit_classifier` in turn (training descriptors are kept between
        the first two steps while they fit in memory, so small data sets are
        described once).
        """
        images = as_image_list(images)
        y = None if y is None else np.asarray(y)
        if y is not None and len(images) != len(y):
            raise ValueError(f"{len(images)} images but {len(y)} labels")
        if len(images) < 2:
            raise ValueError("need at least two training images")
        cached = self._fit_vocabularies(images)
        features = self._features_from_cache(images, cached)
        return self.fit_classifier(features, y)

    # -- feature storage and the streaming fit (scale path) --------------------
    def fit_vocabularies(self, images):
        """Fit the extractors and the encoders' vocabularies only; returns self.

        Descriptors are sampled per image while streaming (each image keeps at
        most ``ceil(max_descriptors / n_images)`` of them, drawn with a seed per
        image from ``random_state``), so memory holds the sample, never all
        descriptors of the data set.
        """
        images = as_image_list(images)
        if len(images) < 2:
            raise ValueError("need at least two training images")
        self._fit_vocabularies(images, cache_bytes=0)
        return self

    def _fit_vocabularies(self, images, cache_bytes: int = _CACHE_BYTES):
        channels = _check_channels(self.channels)
        self.channel_names_ = [c[0] for c in channels]
        self.extractors_ = [clone(ex).fit() for _, ex, _ in channels]
        rng = check_random_state(_as_seed(self.random_state))
        seeds = rng.randint(0, 2**31 - 1, size=len(images))
        described, described_seeds = images, seeds
        cap = self.vocabulary_images
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, numbers.Integral) or cap < 2):
            raise ValueError(f"vocabulary_images must be an integer >= 2 or None, got {cap!r}")
        if cap is not None and len(images) > cap:  # a random subset, in the images' order
            chosen = np.sort(rng.choice(len(images), int(cap), replace=False))
            described, described_seeds = [images[i] for i in chosen], seeds[chosen]
            cache_bytes = 0  # the training features need every image: nothing to keep
        self.encoders_ = []
        self.n_descriptors_sampled_ = []
        cached: list[list[Descriptors] | None] = []
        for (name, _, encoder), extractor in zip(channels, self.extractors_):
            per_image = int(np.ceil(_vocabulary_budget(encoder) / len(described)))
            sample, full = _stream_sample(
                extractor,
                described,
                described_seeds,
                per_image,
                cache_bytes,
                self.n_jobs,
                f"describing ({name})",
                self.verbose,
            )
            self.encoders_.append(seeded(clone(encoder), self.random_state).fit(sample))
            self.n_descriptors_sampled_.append(sum(len(d) for d in sample))
            cached.append(full)
            del sample
        self.channel_sizes_ = [enc.n_features_out_ for enc in self.encoders_]
        return cached

    def fit_classifier(self, features, y, **fit_params):
        """Fit the SVM on precomputed ``features`` (n, sum V_u), float32 or float64; returns self.

        ``fit_params`` go to the classifier's ``fit`` (e.g. ``task_mask``).
        """
        check_is_fitted(self, "encoders_")
        classifier = self.classifier if self.classifier is not None else KernelSVC()
        self.classifier_ = seeded(clone(classifier), self.random_state)
        self.classifier_.set_params(channel_sizes=self.channel_sizes_)
        self.classifier_.fit(features, y, **fit_params)
        self.classes_ = self.classifier_.classes_
        return self

    def with_classifier(self, classifier) -> Pipeline:
        """A fitted pipeline sharing this one's fitted stages, with another fitted classifier.

        E.g. one binary model per class from a multi-label fit
        (``KernelSVC.binary_task``); the stages are shared, not copied.
        """
        check_is_fitted(self, "encoders_")
        check_is_fitted(classifier, "dual_coef_")
        out = clone(self)
        for attr in (
            "channel_names_",
            "extractors_",
            "encoders_",
            "channel_sizes_",
            "n_descriptors_sampled_",
        ):
            setattr(out, attr, getattr(self, attr))
        out.classifier_ = classifier
        out.classes_ = classifier.classes_
        return out

    # -- checks of a loaded model ---------------------------------------------
    def check_fitted(self, where: str | None = None) -> None:
        """Refuse a fitted pipeline whose attributes its stages cannot use safely.

        Runs ``check_fitted`` of every stage (extractors, encoders with their
        vocabularies, the classifier with its kernels: dtypes, shapes, finite values,
        ranges) and checks that they fit together: one extractor and one encoder per
        channel name, each extractor's descriptor dimension is what its encoder's
        vocabulary takes, ``channel_sizes_`` are the encoders' output sizes and the
        widths of the classifier's channel slices, and ``classes_`` are the
        classifier's. Cost O(size of the fitted attributes), no forward pass. An
        unfitted pipeline passes (using it raises ``NotFittedError``).

        Parameters
        ----------
        where : str or None
            Prefix of the message, e.g. the model file's name.

        Raises
        ------
        ModelFileError
            One line naming the stage and attribute, e.g. ``KernelSVC.intercept_ holds NaN``.
        """
        try:
            try:
                self._check_fitted()
            except ModelFileError:
                raise
            except (TypeError, ValueError, AttributeError, IndexError, KeyError, OverflowError) as exc:
                # a check that met a value of a type it did not expect (an int where a tuple
                # belongs, a string for an array): the file is malformed all the same
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise ModelFileError(
                    f"a fitted attribute has a malformed value ({type(exc).__name__}: {first[:160]})"
                ) from None
        except ModelFileError as exc:
            if where is None:
                raise
            raise ModelFileError(f"{where}: {exc}") from None

    def _check_fitted(self) -> None:
        state = self.__dict__
        if "encoders_" not in state and "classifier_" not in state:
            return
        names = state.get("channel_names_")
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)
        ):
            raise ModelFileError("Pipeline.channel_names_ must be a non-empty list of distinct names")
        n = len(names)
        for attr, base in (("extractors_", ExtractorMixin), ("encoders_", Encoder)):
            stages = state.get(attr)
            if not isinstance(stages, list) or len(stages) != n:
                raise ModelFileError(f"Pipeline.{attr} must be a list of {n} stages (one per channel)")
            for stage in stages:
                if not isinstance(stage, base):
                    raise ModelFileError(
                        f"Pipeline.{attr} holds a {type(stage).__name__}, not a {base.__name__}"
                    )
                stage.check_fitted()
        for name, extractor, encoder in zip(names, self.extractors_, self.encoders_):
            if "vocabulary_" not in encoder.__dict__:
                raise ModelFileError(f"Pipeline.encoders_ has an unfitted encoder for channel {name!r}")
            if extractor.output_dimension() != encoder.n_descriptor_features_:
                raise ModelFileError(
                    f"Pipeline.encoders_ channel {name!r} takes {encoder.n_descriptor_features_}-dimensional "
                    f"descriptors, its extractor gives {extractor.output_dimension()}"
                )
        sizes = state.get("channel_sizes_")
        expected = [int(enc.n_features_out_) for enc in self.encoders_]
        if (
            not isinstance(sizes, list)
            or [s if isinstance(s, (int, np.integer)) else None for s in sizes] != expected
        ):
            raise ModelFileError(f"Pipeline.channel_sizes_ must be the encoders' output sizes {expected}")
        sampled = state.get("n_descriptors_sampled_")
        if sampled is not None and (
            not isinstance(sampled, list)
            or len(sampled) != n
            or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in sampled)
        ):
            raise ModelFileError(f"Pipeline.n_descriptors_sampled_ must be {n} counts")
        if "classifier_" not in state:
            return
        classifier = state["classifier_"]
        if not isinstance(classifier, KernelChannelsMixin) or "dual_coef_" not in classifier.__dict__:
            raise ModelFileError(
                f"Pipeline.classifier_ must be a fitted classifier, got {type(classifier).__name__}"
            )
        classifier.check_fitted()
        widths = [int(s.stop - s.start) for s in classifier.channel_slices_]
        if widths != expected:
            raise ModelFileError(
                f"Pipeline.classifier_ has channels of {widths} features, the encoders give {expected}"
            )
        classes = state.get("classes_")
        if (
            not isinstance(classes, np.ndarray)
            or classes.dtype != classifier.classes_.dtype
            or not np.array_equal(classes, classifier.classes_)
        ):
            raise ModelFileError("Pipeline.classes_ must be the classifier's classes_")

    def features(self, images, out=None, dtype=np.float32, chunk: int = 64) -> np.ndarray:
        """Feature vectors of ``images`` streamed into ``out`` (n, sum V_u).

        Parameters
        ----------
        out : ndarray, memmap or None
            Where to write (e.g. ``numpy.lib.format.open_memmap``); None allocates
            an array of ``dtype``. Images are encoded ``chunk`` at a time, so memory
            holds one chunk of float64 vectors plus ``out``.
        dtype : numpy dtype
            Storage type when ``out`` is None: float32 halves memory (a Fisher
            vector of 327,680 dimensions is 1.3 MB instead of 2.6 MB).
        """
        check_is_fitted(self, "encoders_")
        images = as_image_list(images)
        n, d = len(images), int(sum(self.channel_sizes_))
        if out is None:
            out = np.empty((n, d), dtype=dtype)
        if out.shape != (n, d):
            raise ValueError(f"out has shape {out.shape}, expected {(n, d)}")
        bar = tqdm(total=n, desc="encoding", disable=not (self.verbose and n > 1), leave=False)
        for start in range(0, n, chunk):
            part = images[start : start + chunk]
            rows = map_images(self._features_one, part, self.n_jobs, "encoding", False)
            out[start : start + len(part)] = np.vstack(rows)
            bar.update(len(part))
        bar.close()
        return out

    def _features_from_cache(self, images, cached) -> np.ndarray:
        blocks = []
        for u, sets in enumerate(cached):
            if sets is None:
                blocks.append(self._channel_features(images, u))
            else:
                blocks.append(self.encoders_[u].transform(sets))
        return np.hstack(blocks)

    def _channel_features(self, images, u) -> np.ndarray:
        extractor, encoder = self.extractors_[u], self.encoders_[u]

        def one(image):
            return encoder.encode_one(extractor.describe(image))[0]

        return np.vstack(
            map_images(one, images, self.n_jobs, f"encoding ({self.channel_names_[u]})", self.verbose)
        )

    # -- forward -------------------------------------------------------------
    def transform(self, images) -> np.ndarray:
        """Feature vectors (all channels concatenated), shape (n_images, sum V_u)."""
        check_is_fitted(self, "classifier_")
        images = as_image_list(images)
        return np.vstack(map_images(self._features_one, images, self.n_jobs, "encoding", self.verbose))

    def _features_one(self, image) -> np.ndarray:
        return np.concatenate(
            [enc.encode_one(ex.describe(image))[0] for ex, enc in zip(self.extractors_, self.encoders_)]
        )

    def forward_one(self, image) -> ImageTrace:
        """Forward pass of one image keeping every intermediate the relevance pass needs."""
        check_is_fitted(self, "classifier_")
        image = as_float_image(image)
        channels = []
        shape = None
        for name, ex, enc in zip(self.channel_names_, self.extractors_, self.encoders_):
            d = ex.describe(image)
            x, trace = enc.encode_one(d)
            channels.append(ChannelTrace(name, d, trace))
            shape = d.image_shape
        features = np.concatenate([c.encoding.output for c in channels])
        return ImageTrace(shape, channels, features, image)

    def explain(self, images, target=None, rules=None, tile: int | None = None, stride: int | None = None):
        """Explain predictions pixel by pixel with LRP (docs/math.md §2).

        Parameters
        ----------
        images : image, path or list of them
        target : class label, name, index, list of them, or None
            None explains the predicted class of each image (of the whole image,
            for tiles too). A label, its name or its index into ``classes_``
            (:meth:`resolve_target`; ``target=1`` is ``classes_[1]`` when no label
            equals 1). A list explains each with one forward pass per image and
            returns, per image, a list of explanations.
        rules : rule, list of rules, or dict {"classifier", "descriptors", "pixels"}
            Defaults: exact ``Decomposition`` (``Taylor`` for differentiable
            kernels), ``Epsilon(0)`` (``WinnerTakeAll`` for max pooling), ``Flat``.
        tile, stride : int or None
            Explain each image as overlapping ``tile`` x ``tile`` crops every
            ``stride`` pixels, heatmaps averaged per pixel (the polygon experiment).
            ``stride`` defaults to ``tile`` and may not exceed it (pixels would be
            left uncovered); both must be positive.

        Returns
        -------
        list of Explanation (or of lists, for a list of targets)

        Raises
        ------
        ValueError
            ``stride`` larger than ``tile``, a non-positive one, or ``stride`` without
            ``tile``; a target that names no class (before any image is read).
        """
        check_tiling(tile, stride)
        check_is_fitted(self, "classifier_")
        many = isinstance(target, (list, tuple))
        targets = [self.resolve_target(t) for t in (target if many else [target])]
        images = as_image_list(images)
        if tile is not None:
            out = [
                [
                    explain_tiled(self, im, int(tile), int(tile if stride is None else stride), t, rules)
                    for t in targets
                ]
                for im in images
            ]
        else:

            def one(im):
                trace = self.forward_one(im)
                return [explain_trace(self, trace, t, rules) for t in targets]

            out = map_images(one, images, self.n_jobs, "explaining", self.verbose)
        return out if many else [o[0] for o in out]

    @property
    def class_names_(self) -> list[str]:
        """The name of each of ``classes_`` (a multi-label model trained by ``bowlrp-train``:
        the data set's class names; otherwise the labels as text)."""
        check_is_fitted(self, "classifier_")
        return class_names(self.classifier_, self.config)

    def resolve_target(self, target):
        """The class label ``target`` names: the label, its name or its index (None stays None).

        Labels win over indices. Raises a one-line ``ValueError`` listing the class names.
        """
        check_is_fitted(self, "classifier_")
        return resolve_target(self.classifier_, target, self.config)

    def decision_function(self, images) -> np.ndarray:
        """SVM decision values ``f(x)`` (n,) or (n, n_classes)."""
        return self.classifier_.decision_function(self.transform(images))

    def predict(self, images) -> np.ndarray:
        return self.classifier_.predict(self.transform(images))

    def score_samples(self, images) -> np.ndarray:
        """Normality scores of an anomaly detector classifier (bowlrp.classifier.anomaly), shape (n,)."""
        return self.classifier_.score_samples(self.transform(images))

    def score(self, images, y, sample_weight=None) -> float:
        return float(accuracy_score(y, self.predict(images), sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        return tags
