"""Pipelines from YAML configs (``configs/*.yaml``).

A config names each stage by its class and gives its parameters::

    name: polygons_hik
    random_state: 0
    channels:
      - name: sift-s2
        extractor: {DenseSIFT: {bin_sizes: [6], steps: 6, rotate: true}}
        encoder: {RankMapping: {vocabulary: 128, base: 2, n_nearest: 4}}
        kernel: hik                      # or {ExponentialChi2: {sigma: auto}}
    classifier: {C: 1.0, mkl_norm: 2}    # KernelSVC parameters
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from . import kernels as _kernels
from .descriptors import ColorQuantiles, DenseSIFT
from .encoding import FisherVector, HardAssignment, RankMapping, SoftAssignment
from .svm import KernelSVC
from .vocabulary import GMMVocabulary, KMeansVocabulary

REGISTRY = {
    cls.__name__: cls
    for cls in (
        DenseSIFT, ColorQuantiles, KMeansVocabulary, GMMVocabulary, HardAssignment,
        RankMapping, SoftAssignment, FisherVector, KernelSVC, _kernels.Linear,
        _kernels.HistogramIntersection, _kernels.AdditiveChi2, _kernels.ExponentialChi2,
        _kernels.RBF, _kernels.Hellinger,
    )
}


class ConfigError(ValueError):
    """A pipeline config is malformed."""


def load_config(config) -> dict:
    """Read a YAML file (path) or copy a dict; returns the config dict."""
    if isinstance(config, dict):
        return copy.deepcopy(config)
    path = Path(os.fspath(config))
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    data.setdefault("name", path.stem)
    return data


def build(spec):
    """Instantiate ``{ClassName: {param: value}}`` recursively; other values pass through."""
    if isinstance(spec, dict) and len(spec) == 1:
        (key, params), = spec.items()
        if key in REGISTRY:
            params = params or {}
            if not isinstance(params, dict):
                raise ConfigError(f"parameters of {key} must be a mapping, got {params!r}")
            try:
                return REGISTRY[key](**{k: build(v) for k, v in params.items()})
            except TypeError as exc:
                raise ConfigError(f"bad parameters for {key}: {exc}") from None
    if isinstance(spec, dict):
        return {k: build(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [build(v) for v in spec]
    return spec


def pipeline_from_config(config, **overrides):
    """A :class:`~bowlrp.Pipeline` (unfitted) from a config file or dict."""
    from .pipeline import Pipeline

    cfg = load_config(config)
    if "channels" not in cfg or not cfg["channels"]:
        raise ConfigError("config needs a non-empty 'channels' list")
    seed = cfg.get("random_state")
    channels, kernels = [], []
    for i, ch in enumerate(cfg["channels"]):
        missing = {"extractor", "encoder"} - set(ch)
        if missing:
            raise ConfigError(f"channel {i} lacks {sorted(missing)}")
        extractor, encoder = build(ch["extractor"]), build(ch["encoder"])
        if seed is not None and "random_state" in encoder.get_params() and \
                encoder.get_params()["random_state"] is None:
            encoder.set_params(random_state=seed)
        channels.append((ch.get("name", f"channel{i}"), extractor, encoder))
        kernels.append(build(ch.get("kernel", "hik")))
    clf_params = dict(cfg.get("classifier") or {})
    if "KernelSVC" in clf_params:
        clf_params = clf_params["KernelSVC"] or {}
    clf_params = {k: build(v) for k, v in clf_params.items()}
    clf_params.setdefault("random_state", seed)
    classifier = KernelSVC(kernel=kernels, **clf_params)
    params = {"n_jobs": cfg.get("n_jobs"), "random_state": seed, "config": cfg}
    params.update(overrides)
    return Pipeline(channels=channels, classifier=classifier, **params)
