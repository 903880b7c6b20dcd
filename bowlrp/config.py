"""Pipeline configs: YAML files (or dicts) validated against a schema when read.

A config names each stage by its class and gives its parameters::

    name: polygons_hik
    random_state: 0
    vocabulary_images: 1000              # optional: describe at most this many for the vocabularies
    channels:
      - name: sift-s2
        extractor: {DenseSIFT: {bin_sizes: [6], steps: 6, rotate: true}}
        encoder: {RankMapping: {vocabulary: {KMeansVocabulary: {n_words: 128}}, base: 2}}
        kernel: hik                      # or {ExponentialChi2: {sigma: auto}}
    classifier: {C: 1.0, mkl_norm: 2}    # KernelSVC parameters

Configs shipped with bowlrp (``bowlrp/configs/*.yaml``) are found by name from
any directory: ``load_config("polygons_hik")``. Every problem — unknown key
(with the nearest valid one), wrong type, value out of range, YAML that is too
large, too deep or has too many aliases — is a :class:`ConfigError` with one
line naming the file and the key. Overrides (an ``overrides:`` mapping in the
file, or keywords of :meth:`bowlrp.Pipeline.from_config`) go through the same
checks when the config is read (:func:`resolve_overrides`). Nothing here fits
anything; see :meth:`bowlrp.Pipeline.from_config`.
"""

from __future__ import annotations

import copy
import difflib
import numbers
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml

from .classifier import kernels as _kernels
from .classifier.anomaly import KernelSVDD, OneClassKernelSVM
from .classifier.svm import KernelSVC
from .descriptors import ColorQuantiles, DenseSIFT
from .encoding import FisherVector, HardAssignment, RankMapping, SoftAssignment
from .encoding.local_pooling import TailFisherVector
from .encoding.vocabulary import GMMVocabulary, KMeansVocabulary
from .exceptions import BowlrpError

REGISTRY = {
    cls.__name__: cls
    for cls in (
        DenseSIFT,
        ColorQuantiles,
        KMeansVocabulary,
        GMMVocabulary,
        HardAssignment,
        RankMapping,
        SoftAssignment,
        FisherVector,
        TailFisherVector,
        KernelSVC,
        KernelSVDD,
        OneClassKernelSVM,
        _kernels.Linear,
        _kernels.HistogramIntersection,
        _kernels.AdditiveChi2,
        _kernels.ExponentialChi2,
        _kernels.RBF,
        _kernels.Hellinger,
    )
}
KERNEL_NAMES = tuple(_kernels.KERNELS)

MAX_CONFIG_BYTES = 1 << 20
MAX_ALIASES = 64
MAX_DEPTH = 32

# "dataset" and "training" are written into a model's config by bowlrp-train (information only)
TOP_KEYS = (
    "name",
    "description",
    "random_state",
    "n_jobs",
    "vocabulary_images",
    "channels",
    "classifier",
    "overrides",
    "dataset",
    "training",
)
CHANNEL_KEYS = ("name", "extractor", "encoder", "kernel")
# The parameters of bowlrp.Pipeline itself (its get_params(deep=False)); the nested ones are
# "classifier__<param>", "<channel>__extractor__<param>" and "<channel>__encoder__<param>"
PIPELINE_PARAMS = (
    "channels",
    "classifier",
    "n_jobs",
    "verbose",
    "random_state",
    "config",
    "vocabulary_images",
)
EXTRACTORS = ("DenseSIFT", "ColorQuantiles")
ENCODERS = ("HardAssignment", "RankMapping", "SoftAssignment", "FisherVector", "TailFisherVector")
#: ``classifier: {KernelSVDD: {...}}`` names the classifier's class (default KernelSVC)
CLASSIFIERS = ("KernelSVC", "KernelSVDD", "OneClassKernelSVM")
VOCABULARIES = ("KMeansVocabulary", "GMMVocabulary")


class ConfigError(BowlrpError, ValueError):
    """A pipeline config is malformed (one line: file, key, problem)."""


# -- value checks (schema) ------------------------------------------------------
Check = Callable[[object], str | None]  # returns a problem description or None


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(lo=None, hi=None, none=False) -> Check:
    def check(v):
        if v is None and none:
            return None
        if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = f" in [{lo}, {'inf' if hi is None else hi}]" if lo is not None else ""
            return f"must be an integer{bounds}{' or null' if none else ''}, got {v!r}"
        return None

    return check


def number(lo=None, hi=None, none=False, strict_lo=False, extra=()) -> Check:
    def check(v):
        if (v is None and none) or v in extra:
            return None
        bad = not _is_num(v) or v != v or v in (float("inf"), float("-inf"))
        if not bad and lo is not None:
            bad = v <= lo if strict_lo else v < lo
        if not bad and hi is not None:
            bad = v > hi
        if bad:
            rel = ">" if strict_lo else ">="
            bound = f" {rel} {lo}" if lo is not None else ""
            alts = "".join(f" or {e!r}" for e in extra)
            return f"must be a finite number{bound}{alts}{' or null' if none else ''}, got {v!r}"
        return None

    return check


def seed(v):
    """A random_state: null or what every seeded generator (numpy's RandomState) accepts."""
    return integer(0, 2**32 - 1, none=True)(v)


def class_weights(v):
    if v is None or v == "balanced":
        return None
    if not isinstance(v, dict):
        return f"must be null, 'balanced' or a mapping, got {v!r}"
    for label, w in v.items():
        if not _is_num(w) or not 0 < w < float("inf"):
            return f"must map classes to finite numbers > 0, got {w!r} for class {label!r}"
    return None


def choice(*options) -> Check:
    def check(v):
        return None if v in options else f"must be one of {list(options)}, got {v!r}"

    return check


def boolean(v):
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def numbers_list(lo, item=number) -> Check:
    def check(v):
        values = v if isinstance(v, (list, tuple)) else [v]
        if not values:
            return "must not be empty"
        for x in values:
            problem = item(lo)(x)
            if problem:
                return problem
        return None

    return check


def pyramid(v):
    if not isinstance(v, (list, tuple)) or not v:
        return f"must be a list of [rows, columns] pairs, got {v!r}"
    for cell in v:
        if not (
            isinstance(cell, (list, tuple)) and len(cell) == 2 and all(_is_int(c) and c >= 1 for c in cell)
        ):
            return f"must be a list of [rows, columns] pairs of positive integers, got {cell!r}"
    return None


def normalization(v):
    if v is None:
        return None
    steps = ("l1", "l2", "power", "cell-l2", "none")
    if not isinstance(v, str) or not all(s in steps for s in v.split("+")):
        return f"must be steps of {list(steps)} joined by '+', got {v!r}"
    return None


def pooling(v):
    if v == "max" or (_is_num(v) and 0 < v < float("inf")):
        return None
    return f"must be a positive number (p-means) or 'max', got {v!r}"


def vocabulary_spec(v):
    if _is_int(v) and v >= 1 or isinstance(v, (KMeansVocabulary, GMMVocabulary)):
        return None
    return f"must be a positive integer or a KMeansVocabulary / GMMVocabulary, got {v!r}"


def kernel_spec(v):
    if isinstance(v, str) and v.lower() in KERNEL_NAMES or isinstance(v, _kernels.Kernel):
        return None
    return f"must be one of {list(KERNEL_NAMES)} or a kernel class, got {v!r}"


def quantiles(v):
    if not isinstance(v, (list, tuple)) or not v or not all(_is_num(q) and 0 <= q <= 1 for q in v):
        return f"must be a non-empty list of numbers in [0, 1], got {v!r}"
    return None


_ENCODER = {
    "vocabulary": vocabulary_spec,
    "pooling": pooling,
    "pyramid": pyramid,
    "normalization": normalization,
    "power": number(0, strict_lo=True),
    "random_state": seed,
}
_VOCAB = {
    "pca_components": integer(1, none=True),
    "max_descriptors": integer(1, none=True),
    "random_state": seed,
    "verbose": boolean,
}
_WIDTH = {
    "sigma": number(0, strict_lo=True, extra=("auto",)),
    "max_samples": integer(2),
    "random_state": seed,
}

SCHEMA: dict[str, dict[str, Check]] = {
    "DenseSIFT": {
        "bin_sizes": numbers_list(1),
        "steps": numbers_list(1, integer),
        "color": choice("grey", "gray", "opponent", "rgb"),
        "backend": choice("auto", "opencv", "vlfeat"),
        "rotate": boolean,
        "smooth": boolean,
        "fast": boolean,
        "magnification": number(0, strict_lo=True),
        "support": choice("nominal", "full"),
        "n_jobs": integer(none=True),
    },
    "ColorQuantiles": {
        "color": choice("rgb", "opponent", "grey", "gray"),
        "quantiles": quantiles,
        "radius": number(1),
        "step": integer(1),
        "n_jobs": integer(none=True),
    },
    "KMeansVocabulary": {
        "n_words": integer(1),
        "algorithm": choice("minibatch", "full"),
        "reservoir_size": integer(1),
        **_VOCAB,
    },
    "GMMVocabulary": {
        "n_components": integer(1),
        "covariance_floor": number(0, strict_lo=True),
        "backend": choice("sklearn", "streamed", "vlfeat"),
        "max_iter": integer(1),
        **_VOCAB,
    },
    "HardAssignment": dict(_ENCODER),
    "RankMapping": {**_ENCODER, "base": number(1, strict_lo=True), "n_nearest": integer(1)},
    "SoftAssignment": {**_ENCODER, "beta": number(0, strict_lo=True), "n_nearest": integer(1, none=True)},
    "FisherVector": {
        **_ENCODER,
        "posterior_threshold": number(0),
        "parts": numbers_list(None, lambda _: choice("pi", "mu", "sigma")),
    },
    "TailFisherVector": {
        **_ENCODER,
        "posterior_threshold": number(0),
        "parts": numbers_list(None, lambda _: choice("pi", "mu", "sigma")),
        "tail": number(0, 1, strict_lo=True),
    },
    **{
        name: {
            "nu": number(0, 1, strict_lo=True),
            "tol": number(0, strict_lo=True),
            "n_reference": integer(1),
            "random_state": seed,
            "fpr": number(0, 1, strict_lo=True, none=True),
            "contamination": number(0, 0.5, strict_lo=True, none=True),
            "calibration_size": number(0, 1, strict_lo=True),
            "kernel_weights": lambda v: None,
            "kernel": lambda v: None,
            "channel_sizes": lambda v: None,
            **({"C": number(0, strict_lo=True, none=True)} if name == "KernelSVDD" else {}),
        }
        for name in ("KernelSVDD", "OneClassKernelSVM")
    },
    "KernelSVC": {
        "C": number(0, strict_lo=True),
        "mkl_norm": number(1, extra=("uniform",)),
        "mkl_max_iter": integer(1),
        "mkl_tol": number(0, strict_lo=True),
        "n_reference": integer(1),
        "random_state": seed,
        "class_weight": class_weights,
        "kernel": lambda v: None,
        "channel_sizes": lambda v: None,
    },
    "ExponentialChi2": dict(_WIDTH),
    "RBF": dict(_WIDTH),
}
# the top level of a config: the Pipeline's own parameters
TOP_CHECKS: dict[str, Check] = {
    "random_state": seed,
    "n_jobs": integer(none=True),
    "verbose": boolean,
    "vocabulary_images": integer(2, none=True),
}


# -- reading --------------------------------------------------------------------
def shipped_configs() -> list[str]:
    """Names of the configs that ship with bowlrp (``bowlrp/configs/*.yaml``)."""
    folder = resources.files("bowlrp") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(config) -> Path:
    """The file a config argument names: an existing path, else a shipped config by name.

    ``"polygons_hik"``, ``"polygons_hik.yaml"`` and ``"configs/polygons_hik.yaml"``
    (the repository's old location) all find the shipped file from any directory.
    """
    path = Path(os.fspath(config))
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    shipped = resources.files("bowlrp") / "configs" / f"{name}.yaml"
    if shipped.is_file() and (len(path.parts) == 1 or path.parent.name == "configs"):
        return Path(str(shipped))
    near = difflib.get_close_matches(name, shipped_configs(), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else f"; shipped configs: {shipped_configs()}"
    raise ConfigError(f"config file not found: {path}{hint}")


def _check_yaml_shape(text: str, where: str) -> None:
    """Reject alias bombs and deep nesting before anything is constructed."""
    aliases = depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise ConfigError(f"{where}: more than {MAX_ALIASES} YAML aliases; write the values out")
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ConfigError(f"{where} is not valid YAML: {problem}") from None


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, second: int):
        super().__init__(f"duplicate key {key!r} (lines {first} and {second}); a key may appear once")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # "<<" merges may be overridden; unhashable keys fail in the constructor
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> object:
    """Parse a YAML file with limits on size, aliases and depth; a key written twice is refused."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {path} is {size} bytes; configs are limited to {MAX_CONFIG_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    _check_yaml_shape(text, f"config {path}")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"config {path}: {exc}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"config {path} is not valid YAML: {problem}") from None


def load_config(config, overrides: dict | None = None) -> dict:
    """Read and validate a config: a path, a shipped name or a dict (deep-copied).

    Parameters
    ----------
    config : str, Path or dict
    overrides : dict, optional
        More overrides, added to the config's ``overrides`` mapping (over the
        file's own) before it is validated: every override is checked like the
        value it replaces (:func:`resolve_overrides`).

    Returns
    -------
    dict
        The validated config; ``name`` defaults to the file's stem.

    Raises
    ------
    ConfigError
    """
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"overrides must be a mapping of parameter: value, not {type(overrides).__name__}")
    if isinstance(config, dict):
        data, where = copy.deepcopy(config), "config"
        if isinstance(data.get("name"), str):
            where = f"config {data['name']!r}"
    elif not isinstance(config, (str, os.PathLike)):
        raise ConfigError(
            f"a config is a file name, a shipped config's name or a dict, not {type(config).__name__}"
        )
    else:
        path = resolve_config_path(config)
        data, where = read_yaml(path), f"config {path}"
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
    if overrides and isinstance(data, dict):
        earlier = data.get("overrides")
        data["overrides"] = {**earlier, **overrides} if isinstance(earlier, dict) else earlier or overrides
    validate_config(data, where)
    return data


def _unknown(key, valid, where: str, what: str) -> ConfigError:
    near = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {sorted(valid)}"
    return ConfigError(f"{where}: unknown key {key!r} in {what}{hint}")


def validate_config(data, where: str = "config") -> None:
    """Check a config dict against the schema (keys, types, ranges); raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping at the top level")
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, where, "the top level")
    if "name" in data and not isinstance(data["name"], str):
        raise ConfigError(f"{where}: 'name' must be a string")
    for key in ("random_state", "n_jobs", "vocabulary_images"):
        problem = TOP_CHECKS[key](data.get(key))
        if problem:
            raise ConfigError(f"{where}: '{key}' {problem}")
    channels = data.get("channels")
    if not isinstance(channels, list) or not channels:
        raise ConfigError(f"{where}: needs a non-empty 'channels' list")
    names = []
    for i, ch in enumerate(channels):
        at = f"channels[{i}]"
        if not isinstance(ch, dict):
            raise ConfigError(f"{where}: {at} must be a mapping with extractor, encoder, kernel")
        for key in ch:
            if key not in CHANNEL_KEYS:
                raise _unknown(key, CHANNEL_KEYS, where, at)
        missing = [k for k in ("extractor", "encoder") if k not in ch]
        if missing:
            raise ConfigError(f"{where}: {at} lacks {missing}")
        name = ch.get("name", f"channel{i}")
        if not isinstance(name, str) or not name or "__" in name:
            raise ConfigError(f"{where}: {at}.name must be a non-empty string without '__'")
        names.append(name)
        _check_spec(ch["extractor"], f"{at}.extractor", where, EXTRACTORS)
        _check_spec(ch["encoder"], f"{at}.encoder", where, ENCODERS)
        kernel = ch.get("kernel", "hik")
        if isinstance(kernel, str):
            if kernel.lower() not in KERNEL_NAMES:
                raise _unknown(kernel, KERNEL_NAMES, where, f"{at}.kernel")
        else:
            _check_spec(
                kernel,
                f"{at}.kernel",
                where,
                tuple(k for k, c in REGISTRY.items() if issubclass(c, _kernels.Kernel)),
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: channel names must be unique, got {names}")
    clf_class, clf = classifier_spec(data.get("classifier"))
    if not isinstance(clf, dict):
        raise ConfigError(
            f"{where}: 'classifier' must be a mapping of KernelSVC parameters or "
            f"{{ClassName: {{parameters}}}} with a class from {list(CLASSIFIERS)}"
        )
    _check_params(clf_class, clf, "classifier", where, skip=("kernel", "channel_sizes"))
    overrides = data.get("overrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"{where}: 'overrides' must be a mapping of parameter: value")
    if overrides:
        resolve_overrides(data, where)


def _check_spec(spec, at: str, where: str, allowed: tuple[str, ...]) -> None:
    if isinstance(spec, str) and spec in allowed:
        return
    if not (isinstance(spec, dict) and len(spec) == 1):
        raise ConfigError(
            f"{where}: {at} must be {{ClassName: {{parameters}}}} with a class from {list(allowed)}"
        )
    ((cls, params),) = spec.items()
    if cls not in allowed:
        raise _unknown(cls, allowed, where, at)
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: {at}.{cls} parameters must be a mapping, got {params!r}")
    _check_params(cls, params, f"{at}.{cls}", where)


def _check_params(cls: str, params: dict, at: str, where: str, skip=()) -> None:
    valid = REGISTRY[cls]().get_params(deep=False)
    for key, value in params.items():
        if key not in valid and key not in skip:
            raise _unknown(key, valid, where, at)
        _check_value(cls, key, value, f"{at}.{key}", where, skip)


def _check_value(cls: str, key: str, value, at: str, where: str, skip=()) -> None:
    """One parameter ``key`` of class ``cls`` (named ``at`` in the message) against the schema."""
    if key in skip:
        raise ConfigError(f"{where}: {at} is set by the pipeline, not the config")
    if key == "vocabulary" and isinstance(value, dict):
        _check_spec(value, at, where, VOCABULARIES)
        return
    check = SCHEMA.get(cls, {}).get(key)
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"{where}: {at} {problem}")
    if type(value).__name__ in REGISTRY and isinstance(value, REGISTRY[type(value).__name__]):
        _check_params(type(value).__name__, value.get_params(deep=False), at, where)  # e.g. a vocabulary


def _check_stage(value, at: str, where: str, allowed: tuple[str, ...]) -> None:
    """A whole stage: ``{ClassName: {parameters}}``, a class name or an instance of an allowed class."""
    name = type(value).__name__
    if name in allowed and isinstance(value, REGISTRY[name]):
        _check_params(name, value.get_params(deep=False), at, where)
    else:
        _check_spec(value, at, where, allowed)


# -- overrides ------------------------------------------------------------------
def _parameter_owners(cfg: dict) -> dict[str, tuple]:
    """Every name of ``Pipeline.get_params(deep=True)`` for this config -> (kind, owner, parameter).

    kind is "top" (the pipeline's own parameter; owner is its check), "stage"
    (a channel's extractor or encoder; owner is the allowed classes), "param"
    (owner is the instance whose parameter it is) or "fixed" (set by the
    pipeline or by the config's structure, never by an override).
    """
    channels, classifier = build_stages(cfg)
    out: dict[str, tuple] = {
        k: ("top", TOP_CHECKS[k], k) if k in TOP_CHECKS else ("fixed", None, k) for k in PIPELINE_PARAMS
    }

    def nested(prefix, est):
        deep = est.get_params(deep=True)
        for key in deep:
            head, _, param = key.rpartition("__")
            owner = deep[head] if head else est
            # the classifier's kernels come from the config's spec, its channel sizes from the pipeline
            fixed = owner is classifier and param in ("kernel", "channel_sizes")
            out[f"{prefix}__{key}"] = ("fixed" if fixed else "param", owner, param)

    nested("classifier", classifier)
    for name, extractor, encoder in channels:
        for part, est, allowed in (("extractor", extractor, EXTRACTORS), ("encoder", encoder, ENCODERS)):
            out[f"{name}__{part}"] = ("stage", allowed, part)
            nested(f"{name}__{part}", est)
    return out


def resolve_overrides(cfg: dict, where: str = "config") -> dict:
    """The config's ``overrides``, checked against the schema, as :meth:`Pipeline.set_params` arguments.

    A name is a parameter of ``Pipeline.get_params(deep=True)`` with ``__`` or
    ``.`` as separator (``classifier__C``, ``sift-scale2.encoder.vocabulary.n_words``)
    or a bare last part that sets every parameter of that name (``n_words``).
    Each value goes through the check of the parameter it replaces, as if it
    were written in the file, and is built like the file's values
    (``{KMeansVocabulary: {n_words: 64}}`` becomes an instance).

    Raises
    ------
    ConfigError
        An unknown name (the valid ones listed), a parameter that the pipeline
        sets itself, or a value the schema refuses; one line naming the config
        and the override.
    """
    changes = cfg.get("overrides") or {}
    if not changes:
        return {}
    owners = _parameter_owners(cfg)
    out = {}
    for key, value in changes.items():
        name = str(key).replace(".", "__")
        targets = [name] if name in owners else [k for k in owners if k.endswith("__" + name)]
        if not targets:
            settable = [k for k, (kind, _, _) in owners.items() if kind != "fixed"]
            short = sorted({k.rsplit("__", 1)[-1] for k in settable})
            near = difflib.get_close_matches(name, sorted(set(settable) | set(short)), n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            channels = [k.split("__")[0] for k, (kind, _, _) in owners.items() if kind == "stage"]
            raise ConfigError(
                f"{where}: override {key!r} names no parameter of the pipeline{hint}; valid names: "
                f"{short}, each alone setting every parameter of that name, or one parameter named "
                f"as by get_params() ('classifier__C', '<channel>__encoder__vocabulary__n_words' "
                f"with channels {sorted(set(channels))})"
            )
        for target in targets:
            kind, owner, param = owners[target]
            at = f"override {key!r}" + ("" if target == key else f" ({target})")
            if kind == "fixed":
                raise ConfigError(
                    f"{where}: {at} is set by the pipeline and the config's channels, not by an "
                    f"override; override single parameters (e.g. 'classifier__C', 'n_words')"
                )
            if kind == "top":
                problem = owner(value)
                if problem:
                    raise ConfigError(f"{where}: {at} {problem}")
            elif kind == "stage":
                _check_stage(value, at, where, owner)
            else:
                _check_value(type(owner).__name__, param, value, at, where)
            out[target] = build(value)
    return out


# -- building -------------------------------------------------------------------
def build(spec):
    """Instantiate ``{ClassName: {param: value}}`` recursively; other values pass through."""
    if isinstance(spec, dict) and len(spec) == 1:
        ((key, params),) = spec.items()
        if key in REGISTRY:
            params = params or {}
            return REGISTRY[key](**{k: build(v) for k, v in params.items()})
    if isinstance(spec, str) and spec in REGISTRY:
        return REGISTRY[spec]()
    if isinstance(spec, dict):
        return {k: build(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [build(v) for v in spec]
    return spec


def build_stages(cfg: dict) -> tuple[list[tuple], KernelSVC]:
    """Channels ``[(name, extractor, encoder)]`` and the classifier of a validated config."""
    channels, kernels = [], []
    for i, ch in enumerate(cfg["channels"]):
        channels.append((ch.get("name", f"channel{i}"), build(ch["extractor"]), build(ch["encoder"])))
        kernels.append(build(ch.get("kernel", "hik")))
    clf_class, clf_params = classifier_spec(cfg.get("classifier"))
    classifier = REGISTRY[clf_class](kernel=kernels, **{k: build(v) for k, v in dict(clf_params).items()})
    return channels, classifier


def classifier_spec(spec) -> tuple[str, object]:
    """``(class name, parameters)`` of a config's ``classifier``: a mapping of KernelSVC
    parameters, or ``{ClassName: {parameters}}`` with a class from :data:`CLASSIFIERS`."""
    spec = spec or {}
    if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in CLASSIFIERS:
        ((name, params),) = spec.items()
        return name, params or {}
    return "KernelSVC", spec
