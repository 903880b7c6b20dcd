"""Spectral Relevance Analysis (SpRAy) over many explanations, and its report.

- :mod:`~bowlrp.spray.spectral`: the :class:`SpRAy` estimator (pooled maps -> k-NN
  graph -> Laplacian spectrum -> clusters, eigengap, embedding) and :func:`rank_classes`;
- :mod:`~bowlrp.spray.heatmap_files`: reading the maps of an explanation folder;
- :mod:`~bowlrp.spray.report`: SpRAy per class over a folder or a relevance store, and
  the browsable report (HTML, CSV, JSON, PNGs).

``python -m bowlrp.spray`` is the ``bowlrp spray`` program (:mod:`bowlrp.cli.spray`).
"""

from ..image import common_shape, pool_maps
from .spectral import (
    NORMALIZATIONS,
    SpRAy,
    eigengap,
    knn_affinity,
    laplacian_eigenvalues,
    normalize_pooled,
    rank_classes,
    ranking,
)

__all__ = [
    "NORMALIZATIONS", "SpRAy", "common_shape", "eigengap", "knn_affinity", "laplacian_eigenvalues",
    "normalize_pooled", "pool_maps", "rank_classes", "ranking",
]  # fmt: skip
