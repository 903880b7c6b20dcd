"""bowlrp: Bag-of-Words and Fisher-vector kernel classifiers explained with LRP.

The pipeline, stage by stage (each an scikit-learn estimator with ``forward``
and ``relevance``): descriptors (:class:`DenseSIFT`, :class:`ColorQuantiles`)
-> vocabularies (:class:`KMeansVocabulary`, :class:`GMMVocabulary`) ->
mappings (:class:`HardAssignment`, :class:`RankMapping`,
:class:`SoftAssignment`, :class:`FisherVector`) -> kernel machine
(:class:`KernelSVC` with the kernels of :mod:`bowlrp.kernels`), joined by
:class:`Pipeline`. Rules for the relevance pass are in :mod:`bowlrp.rules`;
model files are written and read with :func:`save` / :func:`load`.
"""

from . import kernels, rules
from ._version import __version__
from .anomaly import KernelSVDD, OneClassKernelSVM
from .config import ConfigError, load_config
from .datasets.voc import DatasetError, read_dataset
from .descriptors import ColorQuantiles, DenseSIFT, Descriptors
from .encoding import FisherVector, HardAssignment, RankMapping, SoftAssignment
from .exceptions import BowlrpError, ImageError, ModelFileError, RuleError
from .explanation import Explanation
from .io import load, model_info, save
from .pipeline import Pipeline
from .svm import KernelSVC
from .vocabulary import GMMVocabulary, KMeansVocabulary

__all__ = [
    "BowlrpError", "ColorQuantiles", "ConfigError", "DatasetError", "DenseSIFT", "Descriptors", "Explanation",
    "FisherVector", "GMMVocabulary", "HardAssignment", "ImageError", "KMeansVocabulary",
    "KernelSVC", "KernelSVDD", "ModelFileError", "OneClassKernelSVM", "Pipeline", "RankMapping",
    "RuleError", "SoftAssignment", "SpRAy",
    "__version__", "explain_to_store", "kernels", "load", "load_config", "model_info", "open_store",
    "rank_classes", "read_dataset", "rules", "save",
]


def __getattr__(name: str):
    # bowlrp.spray is also a program (python -m bowlrp.spray): imported on first use only,
    # so running it does not import the module twice
    if name in ("SpRAy", "rank_classes"):
        from . import spray

        return getattr(spray, name)
    # the relevance store and the Dask engine import zarr and dask: only when used
    if name == "open_store":
        from .store import open as open_store

        return open_store
    if name == "explain_to_store":
        from .distributed import explain_to_store

        return explain_to_store
    raise AttributeError(f"module 'bowlrp' has no attribute {name!r}")
