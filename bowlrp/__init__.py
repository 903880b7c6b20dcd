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
"""

import importlib

from . import _moved, rules
from ._utils.validation import image_limits, set_image_limits
from ._version import __version__
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
    # bowlrp.kernels, bowlrp.io, ... as attributes: the 0.1 paths, deprecated (bowlrp._moved)
    if f"{__name__}.{name}" in _moved.MOVED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
