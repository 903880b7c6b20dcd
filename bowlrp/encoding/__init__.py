"""Layer 3: vocabularies, mappings of descriptors, p-means pooling, spatial pyramids, normalisation.

- :mod:`~bowlrp.encoding.vocabulary`: k-means and GMM vocabularies (with an optional
  PCA, whose backward pass the vocabulary owns);
- :mod:`~bowlrp.encoding.words`: hard, rank and soft assignment to visual words;
- :mod:`~bowlrp.encoding.neon`: NEON, the relevance of a word assignment on the
  descriptor's dimensions (the ``Neon`` rule);
- :mod:`~bowlrp.encoding.fisher`: Fisher vectors;
- :mod:`~bowlrp.encoding.pooling`: p-means / max pooling per pyramid cell and the
  normalisations; :mod:`~bowlrp.encoding.base`: what every encoder shares, with
  step 2 of the relevance pass (``relevance``).
"""

from .base import Encoder, EncodingTrace
from .fisher import FisherVector
from .vocabulary import GMMVocabulary, KMeansVocabulary
from .words import HardAssignment, RankMapping, SoftAssignment

__all__ = [
    "Encoder",
    "EncodingTrace",
    "FisherVector",
    "GMMVocabulary",
    "HardAssignment",
    "KMeansVocabulary",
    "RankMapping",
    "SoftAssignment",
]
