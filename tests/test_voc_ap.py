"""VOC 2007 11-point average precision equals the devkit's VOCevalcls.m on hand-made cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bowlrp.evaluation.voc_ap import VOC07_THRESHOLDS, mean_average_precision, voc07_average_precision


def devkit_reference(out, gt):
    """Line-by-line transcription of VOCevalcls.m (VOC 2007 devkit), slow and plain."""
    order = sorted(range(len(out)), key=lambda i: -out[i])  # MATLAB sort is stable
    tp = fp = 0
    rec, prec = [], []
    npos = sum(1 for g in gt if g > 0)
    for i in order:
        tp += gt[i] > 0
        fp += gt[i] < 0
        rec.append(tp / npos)
        prec.append(tp / (tp + fp) if tp + fp else float("nan"))
    ap = 0.0
    for k in range(11):  # t = 0:0.1:1, MATLAB's colon computes the upper half from the end
        t = k * 0.1 if k <= 5 else 1 - (10 - k) * 0.1
        ps = [p for r, p in zip(rec, prec) if r >= t and p == p]
        ap += (max(ps) if ps else 0.0) / 11
    return ap


def test_thresholds_are_matlabs_colon():
    assert VOC07_THRESHOLDS[3] == 0.30000000000000004  # 0 + 3*0.1
    assert VOC07_THRESHOLDS[7] == 0.7  # 1 - 3*0.1, not 7*0.1
    assert VOC07_THRESHOLDS[0] == 0 and VOC07_THRESHOLDS[10] == 1


def test_hand_made_alternating():
    # ranks: +, -, +, -   -> rec .5 .5 1 1, prec 1 .5 2/3 .5
    ap = voc07_average_precision([0.9, 0.8, 0.7, 0.6], [1, -1, 1, -1])
    assert ap == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11, abs=1e-15)


def test_difficult_images_count_for_nothing():
    plain = voc07_average_precision([0.9, 0.8, 0.7, 0.6], [1, -1, 1, -1])
    with_difficult = voc07_average_precision([0.99, 0.9, 0.85, 0.8, 0.7, 0.6, 0.1], [0, 1, 0, -1, 1, -1, 0])
    assert with_difficult == pytest.approx(plain, abs=1e-15)


def test_perfect_and_worst_rankings():
    assert voc07_average_precision([3, 2, 1, 0], [1, 1, -1, -1]) == pytest.approx(1.0)
    # positives last: prec at full recall 2/4, at recall .5 1/3
    assert voc07_average_precision([3, 2, 1, 0], [-1, -1, 1, 1]) == pytest.approx(0.5)


def test_ties_keep_the_given_order_like_matlab_sort():
    assert voc07_average_precision([0.5, 0.5], [-1, 1]) == pytest.approx(0.5)
    assert voc07_average_precision([0.5, 0.5], [1, -1]) == pytest.approx(1.0)


def test_recall_of_exactly_seven_tenths_reaches_the_seventh_threshold():
    # 7 positives first (recall 7/10, precision 1), then 3 negatives, then 3 positives.
    gt = [1] * 7 + [-1] * 3 + [1] * 3
    ap = voc07_average_precision(-np.arange(13.0), gt)
    assert ap == pytest.approx((8 * 1.0 + 3 * 10 / 13) / 11, abs=1e-15)
    # numpy.arange thresholds would miss it: (7 + 4 * 10/13) / 11
    assert ap != pytest.approx((7 * 1.0 + 4 * 10 / 13) / 11)


def test_no_positive_is_nan_and_bad_input_raises():
    assert np.isnan(voc07_average_precision([1, 2], [-1, 0]))
    with pytest.raises(ValueError, match="1, -1 or 0"):
        voc07_average_precision([1, 2], [1, 2])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        voc07_average_precision([1, 2], [1, -1, 1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.sampled_from([1, -1, 0])), min_size=1, max_size=25))
def test_equals_devkit_transcription(pairs):
    out = [float(s) for s, _ in pairs]  # small integers: many ties
    gt = [g for _, g in pairs]
    if not any(g > 0 for g in gt):
        assert np.isnan(voc07_average_precision(out, gt))
        return
    assert voc07_average_precision(out, gt) == pytest.approx(devkit_reference(out, gt), abs=1e-15)


def test_mean_average_precision():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    labels = np.array([[1, -1], [-1, -1], [1, -1], [-1, 1]])
    res = mean_average_precision(scores, labels, ["a", "b"])
    assert res["ap"]["a"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert res["ap"]["b"] == pytest.approx(1.0)
    assert res["map"] == pytest.approx((res["ap"]["a"] + 1.0) / 2)
