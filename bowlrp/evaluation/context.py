"""Context ratio (thesis 4.4): how much positive evidence lies outside the object boxes.

    mu = mean_{q outside the boxes} R+_q  /  mean_{p inside} R+_p

with ``R+ = max(R, 0)``: above 1 the model finds more positive evidence per
pixel in the context than on the object.

The boxes come from PASCAL VOC annotation files
(:func:`bowlrp.datasets.voc_annotations.read_voc_annotation`). :func:`context_ratio` never returns
NaN: boxes covering no pixel or every pixel of the heatmap, or a heatmap
without positive relevance, raise; :func:`context_ratios` records those
images as ``None`` and leaves them out of the class means.
"""

from __future__ import annotations

import numpy as np

from ..datasets.voc_annotations import AnnotationError


def box_mask(shape: tuple[int, int], boxes) -> np.ndarray:
    """Boolean (H, W) mask of the union of boxes (row0, row1, col0, col1), clipped."""
    mask = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        mask[max(0, r0) : max(0, r1), max(0, c0) : max(0, c1)] = True
    return mask


def context_ratio(heatmap: np.ndarray, boxes) -> float:
    """``mean R+ outside / mean R+ inside`` the boxes (``inf`` if all positive relevance is outside).

    Raises
    ------
    AnnotationError
        The boxes cover no pixel of the heatmap, or every pixel (no context).
    ValueError
        The heatmap has no positive relevance anywhere (the ratio is 0 / 0).
    """
    heat = np.maximum(np.asarray(heatmap, dtype=np.float64), 0.0)
    inside = box_mask(heat.shape, boxes)
    if not inside.any():
        raise AnnotationError(f"the boxes {list(boxes)[:3]} cover no pixel of the {heat.shape} heatmap")
    if inside.all():
        raise AnnotationError(f"the boxes cover the whole {heat.shape} heatmap: there is no context")
    mean_in = heat[inside].mean()
    mean_out = heat[~inside].mean()
    if mean_in == 0:
        if mean_out > 0:
            return float("inf")
        raise ValueError("no positive relevance inside or outside the boxes: the ratio is 0 / 0")
    return float(mean_out / mean_in)


def context_ratios(heatmaps, annotations, classes) -> dict:
    """Per-image ratios and per-class means for heatmaps explaining ``classes[i]``.

    Images without a box of their class, or whose ratio is undefined (see
    :func:`context_ratio`), get ``None`` and are left out of the class mean;
    a class without any defined ratio gets ``None``.
    """
    per_image = []
    for heat, ann, cls in zip(heatmaps, annotations, classes):
        boxes = ann.boxes(str(cls))
        try:
            per_image.append(context_ratio(heat, boxes) if boxes else None)
        except ValueError:
            per_image.append(None)
    per_class = {}
    for cls in sorted({str(c) for c in classes}):
        vals = np.array([v for v, c in zip(per_image, classes) if str(c) == cls and v is not None])
        per_class[cls] = float(vals.mean()) if vals.size else None
    return {"per_image": per_image, "per_class": per_class}
