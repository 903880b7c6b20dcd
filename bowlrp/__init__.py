"""bowlrp: Bag-of-Words and Fisher-vector kernel classifiers explained with LRP."""

from ._version import __version__
from .descriptors import ColorQuantiles, DenseSIFT, Descriptors
from .encoding import FisherVector, HardAssignment, RankMapping, SoftAssignment
from .vocabulary import GMMVocabulary, KMeansVocabulary

__all__ = [
    "ColorQuantiles", "DenseSIFT", "Descriptors", "FisherVector", "GMMVocabulary",
    "HardAssignment", "KMeansVocabulary", "RankMapping", "SoftAssignment", "__version__",
]
