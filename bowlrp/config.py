"""Pipeline configs: YAML files (or dicts) validated against a schema when read.

A config names each stage by its class and gives its parameters::

    name: polygons_hik
    random_state: 0
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
line naming the file and the key. Nothing here builds a pipeline; see
:meth:`bowlrp.Pipeline.from_config`.
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
from .classifier.svm import KernelSVC
from .descriptors import ColorQuantiles, DenseSIFT
from .encoding import FisherVector, HardAssignment, RankMapping, SoftAssignment
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
        KernelSVC,
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
    "channels",
    "classifier",
    "overrides",
    "dataset",
    "training",
)
CHANNEL_KEYS = ("name", "extractor", "encoder", "kernel")


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
    "random_state": integer(0, none=True),
}
_VOCAB = {
    "pca_components": integer(1, none=True),
    "max_descriptors": integer(1, none=True),
    "random_state": integer(0, none=True),
    "verbose": boolean,
}
_WIDTH = {
    "sigma": number(0, strict_lo=True, extra=("auto",)),
    "max_samples": integer(2),
    "random_state": integer(0, none=True),
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
        "backend": choice("sklearn", "vlfeat"),
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
    "KernelSVC": {
        "C": number(0, strict_lo=True),
        "mkl_norm": number(1, extra=("uniform",)),
        "mkl_max_iter": integer(1),
        "mkl_tol": number(0, strict_lo=True),
        "n_reference": integer(1),
        "random_state": integer(0, none=True),
        "class_weight": lambda v: (
            None
            if v is None or v == "balanced" or isinstance(v, dict)
            else f"must be null, 'balanced' or a mapping, got {v!r}"
        ),
        "kernel": lambda v: None,
        "channel_sizes": lambda v: None,
    },
    "ExponentialChi2": dict(_WIDTH),
    "RBF": dict(_WIDTH),
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


def read_yaml(path: Path) -> object:
    """Parse a YAML file with limits on size, aliases and depth."""
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
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"config {path} is not valid YAML: {problem}") from None


def load_config(config) -> dict:
    """Read and validate a config: a path, a shipped name or a dict (deep-copied).

    Returns
    -------
    dict
        The validated config; ``name`` defaults to the file's stem and
        ``source`` records where it came from.

    Raises
    ------
    ConfigError
    """
    if isinstance(config, dict):
        data, where = copy.deepcopy(config), "config"
    elif not isinstance(config, (str, os.PathLike)):
        raise ConfigError(
            f"a config is a file name, a shipped config's name or a dict, not {type(config).__name__}"
        )
    else:
        path = resolve_config_path(config)
        data, where = read_yaml(path), f"config {path}"
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
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
    for key in ("random_state", "n_jobs"):
        problem = integer(0 if key == "random_state" else None, none=True)(data.get(key))
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
        _check_spec(ch["extractor"], f"{at}.extractor", where, ("DenseSIFT", "ColorQuantiles"))
        _check_spec(
            ch["encoder"],
            f"{at}.encoder",
            where,
            ("HardAssignment", "RankMapping", "SoftAssignment", "FisherVector"),
        )
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
    clf = data.get("classifier") or {}
    if isinstance(clf, dict) and list(clf) == ["KernelSVC"]:
        clf = clf["KernelSVC"] or {}
    if not isinstance(clf, dict):
        raise ConfigError(f"{where}: 'classifier' must be a mapping of KernelSVC parameters")
    _check_params("KernelSVC", clf, "classifier", where, skip=("kernel", "channel_sizes"))
    overrides = data.get("overrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"{where}: 'overrides' must be a mapping of parameter: value")


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
    rules = SCHEMA.get(cls, {})
    for key, value in params.items():
        if key in skip:
            raise ConfigError(f"{where}: {at}.{key} is set by the pipeline, not the config")
        if key not in valid:
            raise _unknown(key, valid, where, at)
        if key == "vocabulary" and isinstance(value, dict):
            _check_spec(value, f"{at}.vocabulary", where, ("KMeansVocabulary", "GMMVocabulary"))
            continue
        check = rules.get(key)
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where}: {at}.{key} {problem}")


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
    clf_params = dict(cfg.get("classifier") or {})
    if list(clf_params) == ["KernelSVC"]:
        clf_params = dict(clf_params["KernelSVC"] or {})
    classifier = KernelSVC(kernel=kernels, **{k: build(v) for k, v in clf_params.items()})
    return channels, classifier
