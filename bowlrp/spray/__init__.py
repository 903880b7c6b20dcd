"""Spectral Relevance Analysis (SpRAy) over many explanations, and its report.

- :mod:`~bowlrp.spray.spectral`: the :class:`SpRAy` estimator (pooled maps -> k-NN
  graph -> Laplacian spectrum -> clusters, eigengap, embedding) and :func:`rank_classes`;
- :mod:`~bowlrp.spray.heatmap_files`: reading the maps of an explanation folder;
- :mod:`~bowlrp.spray.report`: SpRAy per class over a folder or a relevance store, and
  the browsable report (HTML, CSV, JSON, PNGs);
- :mod:`~bowlrp.spray.virelay`: :func:`export_virelay`, the analyses as a project of
  ViRelAy, the SpRAy authors' viewer (``virelay DIR/project.yaml``).

``python -m bowlrp.spray`` is the ``bowlrp spray`` program (:mod:`bowlrp.cli.spray`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on first use (__getattr__ below): `python -m bowlrp.spray --help` stays light
    from ..image import common_shape, pool_maps
    from .analyses import CLUSTERINGS, EMBEDDINGS, spectral_embedding
    from .cache import CacheWarning, StageCache
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
    from .virelay import VirelayExport, VirelayExportError, export_virelay

#: public name -> the module that defines it (relative to this package)
_PUBLIC: dict[str, str] = {
    "common_shape": "..image",
    "pool_maps": "..image",
    **{
        name: ".spectral"
        for name in (
            "NORMALIZATIONS", "SpRAy", "eigengap", "knn_affinity", "laplacian_eigenvalues",
            "normalize_pooled", "rank_classes", "ranking",
        )
    },
    **{name: ".analyses" for name in ("CLUSTERINGS", "EMBEDDINGS", "spectral_embedding")},
    **{name: ".cache" for name in ("CacheWarning", "StageCache")},
    **{name: ".virelay" for name in ("VirelayExport", "VirelayExportError", "export_virelay")},
}  # fmt: skip

__all__ = [
    "CLUSTERINGS", "EMBEDDINGS", "CacheWarning", "StageCache", "spectral_embedding",
    "NORMALIZATIONS", "SpRAy", "VirelayExport", "VirelayExportError", "common_shape", "eigengap",
    "export_virelay", "knn_affinity", "laplacian_eigenvalues", "normalize_pooled", "pool_maps",
    "rank_classes", "ranking",
]  # fmt: skip


def __getattr__(name: str):
    """A public name, imported from its module on first access (then cached here)."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
