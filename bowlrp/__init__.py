"""bowlrp: Bag-of-Words and Fisher-vector kernel classifiers explained with LRP.

The pipeline, stage by stage, one folder per layer (each stage an scikit-learn
estimator with ``forward`` and ``relevance``): :mod:`bowlrp.descriptors`
(:class:`DenseSIFT`, :class:`ColorQuantiles`) -> :mod:`bowlrp.encoding`
(vocabularies :class:`KMeansVocabulary`, :class:`GMMVocabulary`; mappings
:class:`HardAssignment`, :class:`RankMapping`, :class:`SoftAssignment`,
:class:`FisherVector`) -> :mod:`bowlrp.classifier` (:class:`KernelSVC` and the
anomaly detectors), joined by :class:`Pipeline`; :mod:`bowlrp.explanation` runs the
relevance pass with the rules of :mod:`bowlrp.rules`. Model files are written and
read with :func:`save` / :func:`load`; many images are explained by :mod:`bowlrp.runs`
and analysed by :mod:`bowlrp.spray` and :mod:`bowlrp.evaluation`.

The names are imported on first use: ``import bowlrp`` loads none of the numerical
libraries, ``bowlrp.Pipeline`` (or ``from bowlrp import Pipeline``) loads what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import _moved
from ._version import __version__

if TYPE_CHECKING:  # the names of the public API, imported on first use (__getattr__ below)
    from . import rules
    from ._utils.validation import image_limits, set_image_limits
    from .classifier import KernelSVC, KernelSVDD, OneClassKernelSVM
    from .config import ConfigError, load_config
    from .datasets.voc import DatasetError, read_dataset
    from .descriptors import ColorQuantiles, DenseSIFT, Descriptors
    from .encoding import (
        FisherVector,
        GMMVocabulary,
        HardAssignment,
        KMeansVocabulary,
        RankMapping,
        SoftAssignment,
    )
    from .exceptions import BowlrpError, ImageError, ModelFileError, RuleError
    from .explanation import Explanation
    from .model_files import load, model_info, save
    from .pipeline import Pipeline
    from .runs import explain_to_store, open_store
    from .spray import SpRAy, rank_classes

#: public name -> the module that defines it; imported on first access, so ``import bowlrp``
#: loads no numerical library (scikit-learn, SciPy, OpenCV, matplotlib, Dask, Zarr, Numba)
_PUBLIC: dict[str, str] = {
    "rules": ".rules",
    **dict.fromkeys(("image_limits", "set_image_limits"), "._utils.validation"),
    **dict.fromkeys(("KernelSVC", "KernelSVDD", "OneClassKernelSVM"), ".classifier"),
    **dict.fromkeys(("ConfigError", "load_config"), ".config"),
    **dict.fromkeys(("DatasetError", "read_dataset"), ".datasets.voc"),
    **dict.fromkeys(("ColorQuantiles", "DenseSIFT", "Descriptors"), ".descriptors"),
    **dict.fromkeys(
        (
            "FisherVector",
            "GMMVocabulary",
            "HardAssignment",
            "KMeansVocabulary",
            "RankMapping",
            "SoftAssignment",
        ),
        ".encoding",
    ),
    **dict.fromkeys(("BowlrpError", "ImageError", "ModelFileError", "RuleError"), ".exceptions"),
    "Explanation": ".explanation",
    **dict.fromkeys(("load", "model_info", "save"), ".model_files"),
    "Pipeline": ".pipeline",
    **dict.fromkeys(("explain_to_store", "open_store"), ".runs"),
    **dict.fromkeys(("SpRAy", "rank_classes"), ".spray"),
}

__all__ = [
    "BowlrpError",
    "ColorQuantiles",
    "ConfigError",
    "DatasetError",
    "DenseSIFT",
    "Descriptors",
    "Explanation",
    "FisherVector",
    "GMMVocabulary",
    "HardAssignment",
    "ImageError",
    "KMeansVocabulary",
    "KernelSVC",
    "KernelSVDD",
    "ModelFileError",
    "OneClassKernelSVM",
    "Pipeline",
    "RankMapping",
    "RuleError",
    "SoftAssignment",
    "SpRAy",
    "__version__",
    "explain_to_store",
    "image_limits",
    "load",
    "load_config",
    "model_info",
    "open_store",
    "rank_classes",
    "read_dataset",
    "rules",
    "save",
    "set_image_limits",
]

_moved.install()


def __getattr__(name: str):
    """A public name, imported from its module on first access (then cached here); the 0.1
    module paths (``bowlrp.kernels``, ``bowlrp.io``, ...) as deprecated attributes (:mod:`._moved`)."""
    if name in _PUBLIC:
        module = importlib.import_module(_PUBLIC[name], __name__)
        value = module if name == "rules" else getattr(module, name)
        globals()[name] = value
        return value
    if f"{__name__}.{name}" in _moved.MOVED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
