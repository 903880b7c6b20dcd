"""Layer 3: mappings of descriptors, p-means pooling, spatial pyramids, normalisation."""

from .base import Encoder, EncodingTrace
from .fisher import FisherVector
from .words import HardAssignment, RankMapping, SoftAssignment

__all__ = [
    "Encoder", "EncodingTrace", "FisherVector", "HardAssignment", "RankMapping",
    "SoftAssignment",
]
