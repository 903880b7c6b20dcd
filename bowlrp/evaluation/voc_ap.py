"""Average precision as the PASCAL VOC 2007 devkit computes it (``VOCevalcls.m``).

The devkit ranks the images by decreasing score (MATLAB's stable ``sort``),
counts true positives (label 1) and false positives (label -1) down the
ranking -- "difficult" images (label 0) stay in the ranking but count as
neither -- and averages the interpolated precision at eleven recall levels::

    rec_j  = TP_j / #(label == 1)          prec_j = TP_j / (TP_j + FP_j)
    AP     = 1/11 sum_{t in 0:0.1:1} max{prec_j : rec_j >= t}   (0 if there is none)

The thresholds are MATLAB's ``0:0.1:1``, which the colon operator computes
from both ends (``0 + k*0.1`` for k <= 5, ``1 - (10-k)*0.1`` above), so that
e.g. the seventh threshold is the double nearest 0.7, where
``numpy.arange(0, 1.1, 0.1)`` gives 0.7000000000000001 and would miss a
recall of exactly 7/10.
"""

from __future__ import annotations

import numpy as np

#: MATLAB's ``0:0.1:1`` bit for bit (symmetric colon operator).
VOC07_THRESHOLDS = np.array([k * 0.1 for k in range(6)] + [1 - (10 - k) * 0.1 for k in range(6, 11)])


def voc07_average_precision(scores, labels) -> float:
    """VOC 2007 11-point interpolated AP of one class.

    Parameters
    ----------
    scores : array (n,)
        Classifier outputs; higher means more confident the class is present.
    labels : array (n,)
        1 (present), -1 (absent), 0 (difficult: ignored, as in the devkit).

    Returns
    -------
    float
        AP in [0, 1]; nan when there is no positive image.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.all(np.isin(labels, (-1, 0, 1))):
        raise ValueError("labels must be 1, -1 or 0 (difficult)")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    n_pos = int(np.sum(labels > 0))
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    ranked = labels[order]
    tp = np.cumsum(ranked > 0)
    fp = np.cumsum(ranked < 0)
    recall = tp / n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (fp + tp)  # 0/0 (difficult images ranked first) is NaN, as in MATLAB
    ap = 0.0
    for t in VOC07_THRESHOLDS:
        chosen = precision[recall >= t]
        chosen = chosen[~np.isnan(chosen)]  # MATLAB's max ignores NaN
        ap += (chosen.max() if chosen.size else 0.0) / 11
    return float(ap)


def mean_average_precision(scores, labels, classes) -> dict:
    """Per-class VOC 2007 AP and their mean: ``{"ap": {class: AP}, "map": mAP}``.

    ``scores`` and ``labels`` are (n_images, n_classes), columns in ``classes`` order.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    aps = {str(c): voc07_average_precision(scores[:, k], labels[:, k]) for k, c in enumerate(classes)}
    values = [v for v in aps.values() if np.isfinite(v)]
    return {"ap": aps, "map": float(np.mean(values)) if values else float("nan")}


__all__ = ["VOC07_THRESHOLDS", "mean_average_precision", "voc07_average_precision"]
