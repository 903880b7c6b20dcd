"""Localisation: does the relevance fall on the object? Maps against masks or boxes, no model.

For a map ``R`` (H, W) and a ground-truth mask ``S`` (H, W, boolean, ``|S|`` pixels):

* relevance mass accuracy (Arras et al. 2022): ``sum_{p in S} R_p / sum_p R_p``;
* relevance rank accuracy (Arras et al. 2022): the share of the ``|S|`` highest-ranked
  pixels of ``R`` that lie in ``S``;
* pointing game (Zhang et al. 2018): 1 if a pixel of maximal ``R`` lies in ``S``;
* AUC: the area under the ROC curve of ``R`` as a score for ``S`` (scikit-learn's
  ``roc_auc_score``; 0.5 is chance);
* the context ratio (:mod:`bowlrp.evaluation.context`), lower is better.

Masks are boolean arrays or lists of boxes ``(row0, row1, col0, col1)`` per image
(:func:`as_masks`). An image whose mask is empty gets NaN, as in Quantus.

Agreement with Quantus 0.6 (``tests/test_quantus_agreement.py``): rank accuracy,
pointing game and AUC are Quantus's numbers on the same arrays (Quantus's default
max-normalisation does not change them). Relevance mass accuracy differs by default:
bowlrp counts positive relevance only (``positive=True``), as Arras et al. do, so the
value is a share in [0, 1]; Quantus (``abs=False``) sums signed relevance, which gives
values outside [0, 1] (even negative) for maps with negative evidence, as LRP's are.
``positive=False`` gives Quantus's number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from .context import box_mask, context_ratio
from .results import MetricResult


def as_masks(masks_or_boxes, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Boolean (H, W) masks, one per image, from masks or from lists of boxes.

    Parameters
    ----------
    masks_or_boxes : sequence
        Per image, a boolean / 0-1 array (H, W), or a list of boxes
        ``(row0, row1, col0, col1)`` (end-exclusive) whose union is the mask.
    shapes : sequence of (H, W)
        The maps' shapes.

    Raises
    ------
    ValueError
        Different numbers of masks and maps, or a mask of another shape than its map.
    """
    if len(masks_or_boxes) != len(shapes):
        raise ValueError(f"{len(shapes)} maps but {len(masks_or_boxes)} masks")
    out = []
    for i, (m, shape) in enumerate(zip(masks_or_boxes, shapes)):
        arr = np.asarray(m) if not isinstance(m, list | tuple) else None
        if arr is not None and arr.ndim == 2 and arr.shape == tuple(shape):
            out.append(arr.astype(bool))
        elif arr is not None and arr.ndim == 2:
            raise ValueError(f"mask {i} has shape {arr.shape} but its map has shape {tuple(shape)}")
        else:
            out.append(box_mask(tuple(shape), [tuple(int(v) for v in b) for b in m]))
    return out


def _pairs(maps, masks):
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    return maps, as_masks(masks, [m.shape for m in maps])


def relevance_mass_accuracy(maps, masks, positive: bool = True, method: str | None = None) -> MetricResult:
    """Share of the relevance inside the mask, per image (higher is better).

    ``RMA = sum_{p in S} R'_p / sum_p R'_p`` with ``R' = max(R, 0)`` (``positive=True``,
    the default, Arras et al.) or ``R' = R`` (``positive=False``, Quantus's default).
    NaN for an empty mask or a zero denominator.

    Parameters
    ----------
    maps : sequence of (H, W) arrays
    masks : sequence of (H, W) boolean masks or lists of boxes (:func:`as_masks`)
    positive : bool
    method : str or None, the explainer's name, recorded in the result
    """
    maps, masks = _pairs(maps, masks)
    vals = []
    for r, s in zip(maps, masks):
        r = np.maximum(r, 0.0) if positive else r
        total = r.sum()
        vals.append(r[s].sum() / total if s.any() and total != 0 else np.nan)
    return MetricResult("relevance_mass_accuracy", np.array(vals), True, {"positive": positive}, method)


def relevance_rank_accuracy(maps, masks, method: str | None = None) -> MetricResult:
    """Share of the ``|S|`` top-ranked pixels that lie in the mask ``S`` (higher is better).

    Ranks by signed relevance, descending; ties are ordered as a stable sort of
    ``-R`` orders them (pixel index order, as Quantus's ``argsort``). NaN for an empty mask.
    """
    maps, masks = _pairs(maps, masks)
    vals = []
    for r, s in zip(maps, masks):
        k = int(s.sum())
        if k == 0:
            vals.append(np.nan)
            continue
        top = np.argsort(-r.ravel(), kind="stable")[:k]
        vals.append(s.ravel()[top].mean())
    return MetricResult("relevance_rank_accuracy", np.array(vals), True, {}, method)


def pointing_game(maps, masks, method: str | None = None) -> MetricResult:
    """1 if a pixel of maximal relevance lies in the mask, else 0 (higher is better; NaN for empty masks)."""
    maps, masks = _pairs(maps, masks)
    vals = [float(s[r == r.max()].any()) if s.any() else np.nan for r, s in zip(maps, masks)]
    return MetricResult("pointing_game", np.array(vals), True, {}, method)


def localisation_auc(maps, masks, method: str | None = None) -> MetricResult:
    """ROC AUC of the relevance as a detector of the mask's pixels (higher is better; 0.5 is chance).

    NaN when the mask is empty or covers every pixel (no negatives).
    """
    maps, masks = _pairs(maps, masks)
    vals = []
    for r, s in zip(maps, masks):
        ok = s.any() and not s.all()
        vals.append(roc_auc_score(s.ravel(), r.ravel()) if ok else np.nan)
    return MetricResult("localisation_auc", np.array(vals), True, {}, method)


def context_ratio_result(maps, boxes, method: str | None = None) -> MetricResult:
    """The context ratio (:func:`~bowlrp.evaluation.context.context_ratio`) per image (lower is better).

    ``boxes`` per image: a list of boxes ``(row0, row1, col0, col1)`` or a mask (whose
    bounding boxes are not formed: the mask itself is used). NaN where the ratio is undefined.
    """
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    masks = as_masks(boxes, [m.shape for m in maps])
    vals = []
    for r, s in zip(maps, masks):
        rows, cols = np.nonzero(s)
        # one box per mask pixel is the mask exactly; the ratio only needs the union
        pixel_boxes = [(a, a + 1, b, b + 1) for a, b in zip(rows, cols)]
        try:
            vals.append(context_ratio(r, pixel_boxes))
        except ValueError:
            vals.append(np.nan)
    return MetricResult("context_ratio", np.array(vals), False, {}, method)


#: every localisation metric by name (``maps, masks -> MetricResult``)
LOCALISATION_METRICS = {
    "relevance_mass_accuracy": relevance_mass_accuracy,
    "relevance_rank_accuracy": relevance_rank_accuracy,
    "pointing_game": pointing_game,
    "localisation_auc": localisation_auc,
    "context_ratio": context_ratio_result,
}
