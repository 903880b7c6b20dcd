"""Layer 2: local descriptors with the exact pixels each one read."""

from .geometry import DISC, ROTATED_SQUARE, SQUARE, Descriptors
from .quantiles import ColorQuantiles
from .sift import DenseSIFT, vlfeat_available

__all__ = [
    "DISC", "ROTATED_SQUARE", "SQUARE", "ColorQuantiles", "DenseSIFT", "Descriptors",
    "vlfeat_available",
]
