"""The output folder of ``bowlrp explain --out DIR``: its file names and records, in one place.

Per image ``<id>`` (the input's path relative to the common root, without its
extension): ``<id>_heatmap.png`` (colour-coded map with a ticked colour bar),
``<id>_overlay.png``, ``<id>_relevance.npy`` (H x W float64, raw) and ``<id>.json``
(the record: explained ``"target"``, ``"score"``, the ``"image"`` path, the
``"run_key"`` of model and settings, ...). ``run.json`` at the top records the run.
The writer (:mod:`bowlrp.runs.folder`) and every reader (:mod:`bowlrp.spray.heatmap_files`)
take the names from here.
"""

from __future__ import annotations

import json
from pathlib import Path

HEATMAP_SUFFIX = "_heatmap.png"
OVERLAY_SUFFIX = "_overlay.png"
RELEVANCE_SUFFIX = "_relevance.npy"
RECORD_SUFFIX = ".json"
OUTPUT_SUFFIXES = (HEATMAP_SUFFIX, OVERLAY_SUFFIX, RELEVANCE_SUFFIX, RECORD_SUFFIX)
RUN_FILE = "run.json"
RECORD_VERSION = 1


def output_paths(out: Path, image_id: str) -> dict[str, Path]:
    """The four output files of one image id."""
    base = out / image_id
    return {
        "heatmap": base.parent / f"{base.name}{HEATMAP_SUFFIX}",
        "overlay": base.parent / f"{base.name}{OVERLAY_SUFFIX}",
        "relevance": base.parent / f"{base.name}{RELEVANCE_SUFFIX}",
        "json": base.parent / f"{base.name}{RECORD_SUFFIX}",
    }


def record_path(relevance_path: Path) -> Path:
    """The record (``<id>.json``) beside a relevance map (``<id>_relevance.npy``)."""
    return relevance_path.with_name(relevance_path.name[: -len(RELEVANCE_SUFFIX)] + RECORD_SUFFIX)


def read_record(path: Path) -> dict | None:
    """A JSON record as a dict, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
