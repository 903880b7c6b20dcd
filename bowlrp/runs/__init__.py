"""Explaining many images: one per-image step, two outputs, one engine.

- :mod:`~bowlrp.runs.inputs`: the images of a run (files, folders, globs) with collision-free ids;
- :mod:`~bowlrp.runs.step`: the per-image step every output shares, its one-line failure;
- :mod:`~bowlrp.runs.folder`: explanations into a folder of PNG / NPY / JSON files
  (names in :mod:`~bowlrp.runs.folder_layout`), streaming, atomic, resumable;
- :mod:`~bowlrp.runs.store`: the Zarr relevance store (one record per image, pooled maps for SpRAy);
- :mod:`~bowlrp.runs.distributed`: explaining into a store on a Dask cluster (or serially).
"""

from .distributed import explain_to_store
from .folder import explain_to_folder
from .inputs import ImageInput, collect_inputs
from .store import RelevanceStore
from .store import open as open_store

__all__ = [
    "ImageInput",
    "RelevanceStore",
    "collect_inputs",
    "explain_to_folder",
    "explain_to_store",
    "open_store",
]
