"""Layer 2: local descriptors with the exact pixels each one read, and step 3 of the relevance pass.

- :mod:`~bowlrp.descriptors.sift`: dense SIFT (VLFeat or OpenCV) at several bin sizes;
- :mod:`~bowlrp.descriptors.quantiles`: colour quantiles on discs;
- :mod:`~bowlrp.descriptors.geometry`: :class:`Descriptors`, the pixels each one read
  (and SIFT's bin layout), rasterised onto the image;
- :mod:`~bowlrp.descriptors.base`: ``forward`` and ``relevance`` every extractor shares;
- :mod:`~bowlrp.descriptors.pixel_rules` (``Flat``, ``SIFTBins``) and
  :mod:`~bowlrp.descriptors.contribution` (``Contribution``, with its separable fast
  path :mod:`~bowlrp.descriptors.contribution_separable`): descriptors to pixels.
"""

from .geometry import DISC, ROTATED_SQUARE, SQUARE, Descriptors
from .quantiles import ColorQuantiles
from .sift import DenseSIFT, vlfeat_available

__all__ = [
    "DISC",
    "ROTATED_SQUARE",
    "SQUARE",
    "ColorQuantiles",
    "DenseSIFT",
    "Descriptors",
    "vlfeat_available",
]
