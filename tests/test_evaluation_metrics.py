"""Localisation, complexity and robustness metrics and MetricResult, against plain-NumPy references.

The faithfulness metrics are in ``test_evaluation_metrics_faithfulness.py``, the
agreement with Quantus in ``test_quantus_agreement.py``.
"""

import numpy as np
import pytest

from bowlrp import DenseSIFT, HardAssignment, KMeansVocabulary
from bowlrp.classifier.svm import KernelSVC
from bowlrp.datasets.shortcut import generate
from bowlrp.evaluation import (
    MetricResult,
    as_masks,
    complexity,
    context_ratio,
    context_ratio_result,
    explain_maps,
    localisation_auc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    robustness,
    sparseness,
)
from bowlrp.evaluation.explainers import resolve_targets
from bowlrp.pipeline import Pipeline

from .conftest import blobs, small_hik_model, stripes


def _maps_and_masks(seed=0, n=6, shape=(12, 15)):
    rng = np.random.default_rng(seed)
    maps = [rng.normal(size=shape) for _ in range(n)]
    masks = []
    for _ in range(n):
        m = np.zeros(shape, dtype=bool)
        r, c = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 5)
        m[r : r + 4, c : c + 5] = True
        masks.append(m)
    maps[1][masks[1]] += 10.0  # one map that points at its mask: every metric is perfect
    return maps, masks


# ------------------------------------------------------------------ localisation


def test_localisation_metrics_equal_plain_loops():
    maps, masks = _maps_and_masks()
    rma = relevance_mass_accuracy(maps, masks)
    rma_signed = relevance_mass_accuracy(maps, masks, positive=False)
    rra = relevance_rank_accuracy(maps, masks)
    pg = pointing_game(maps, masks)
    auc = localisation_auc(maps, masks)
    for i, (r, s) in enumerate(zip(maps, masks)):
        pix = [(a, b) for a in range(r.shape[0]) for b in range(r.shape[1])]
        inside = sum(max(r[p], 0.0) for p in pix if s[p])
        total = sum(max(r[p], 0.0) for p in pix)
        assert rma.values[i] == pytest.approx(inside / total, rel=1e-12)
        assert rma_signed.values[i] == pytest.approx(sum(r[p] for p in pix if s[p]) / sum(r[p] for p in pix))
        k = int(s.sum())
        top = sorted(pix, key=lambda p: -r[p])[:k]
        assert rra.values[i] == pytest.approx(sum(s[p] for p in top) / k)
        best = max(pix, key=lambda p: r[p])
        assert pg.values[i] == float(s[best])
        pos = [r[p] for p in pix if s[p]]
        neg = [r[p] for p in pix if not s[p]]
        wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)  # Mann-Whitney
        assert auc.values[i] == pytest.approx(wins / (len(pos) * len(neg)), rel=1e-12)
    assert pg.values[1] == rra.values[1] == auc.values[1] == 1.0
    assert all(m.higher_is_better for m in (rma, rra, pg, auc))
    assert rma.params == {"positive": True} and rma.n == len(maps)


def test_boxes_give_the_mask_and_empty_masks_give_nan():
    maps, _ = _maps_and_masks()
    boxes = [[(2, 5, 3, 7), (8, 10, 0, 2)]] + [[(0, 3, 0, 3)]] * 5
    masks = as_masks(boxes, [m.shape for m in maps])
    expected = np.zeros(maps[0].shape, bool)
    expected[2:5, 3:7] = expected[8:10, 0:2] = True
    np.testing.assert_array_equal(masks[0], expected)
    assert relevance_mass_accuracy(maps, boxes).values[0] == relevance_mass_accuracy(maps, masks).values[0]
    empty = [np.zeros(m.shape, bool) for m in maps]
    for metric in (relevance_mass_accuracy, relevance_rank_accuracy, pointing_game, localisation_auc):
        r = metric(maps, empty)
        assert np.isnan(r.values).all() and r.n == 0 and np.isnan(r.mean)
    with pytest.raises(ValueError, match="shape"):
        as_masks([np.zeros((3, 3), bool)], [(4, 4)])
    with pytest.raises(ValueError, match="masks"):
        relevance_mass_accuracy(maps, masks[:2])


def test_context_ratio_result_equals_context_ratio():
    maps, masks = _maps_and_masks()
    boxes = [[(2, 6, 1, 9)] for _ in maps]
    r = context_ratio_result(maps, boxes)
    assert not r.higher_is_better
    for i, m in enumerate(maps):
        assert r.values[i] == pytest.approx(context_ratio(m, boxes[i]), rel=1e-12)


# ------------------------------------------------------------------ complexity


def test_sparseness_and_complexity_equal_plain_formulas():
    maps, _ = _maps_and_masks(n=4)
    maps.append(np.zeros((12, 15)))
    maps[3] = np.zeros((12, 15))
    maps[3][4, 4] = -2.0  # one pixel carries everything: Gini 1 - 1/n, entropy 0
    sp, cx = sparseness(maps), complexity(maps)
    for i, m in enumerate(maps[:4]):
        a = np.abs(m).ravel().tolist()
        n = len(a)
        mad = sum(abs(x - y) for x in a for y in a)  # Gini = sum |a_i - a_j| / (2 n sum a)
        assert sp.values[i] == pytest.approx(mad / (2 * n * sum(a)), rel=1e-10)
        p = [x / sum(a) for x in a if x > 0]
        assert cx.values[i] == pytest.approx(-sum(q * np.log(q) for q in p), rel=1e-10, abs=1e-12)
    assert sp.values[3] == pytest.approx(1 - 1 / 180) and cx.values[3] == 0
    assert np.isnan(sp.values[4]) and np.isnan(cx.values[4])  # no relevance: neither sparse nor dense
    assert sp.higher_is_better and not cx.higher_is_better


# ------------------------------------------------------------------ MetricResult


def test_metric_result_statistics_and_paired_differences():
    a = MetricResult("m", [1.0, 2.0, np.nan, 4.0], True, {"k": 1}, "lrp")
    b = MetricResult("m", [0.5, 2.5, 1.0, np.nan], True, {"k": 1}, "random")
    v = np.array([1.0, 2.0, 4.0])
    assert a.n == 3 and a.mean == pytest.approx(v.mean())
    assert a.sem == pytest.approx(np.sqrt(((v - v.mean()) ** 2).sum() / 2) / np.sqrt(3))
    mean, sem, n = a.paired_difference(b)
    assert (mean, n) == (pytest.approx(0.0), 2) and sem == pytest.approx(0.5)
    d = a.to_dict()
    assert d["values"][2] is None and d["higher_is_better"] and d["n"] == 3 and d["method"] == "lrp"
    with pytest.raises(ValueError, match="same images"):
        a.paired_difference(MetricResult("other", [1, 2, 3, 4], True))


# ------------------------------------------------------------------ robustness


@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(0)
    model = small_hik_model(rng)
    return model, [stripes(rng, 40), blobs(rng, 40)]


def squares(model, images, targets):
    """A model-independent explainer: the image squared (smooth in the input)."""
    return [np.asarray(im) ** 2 for im in images]


def test_robustness_of_a_callable_equals_the_plain_formulas(small_model):
    model, images = small_model
    res = robustness(model, images, squares, samples=3, radius=0.05, seed=4)
    rng = np.random.default_rng(4)
    for i, x in enumerate(images):
        e = x**2 / (x**2).max()
        sens, lip = [], []
        for _ in range(3):
            xp = np.clip(x + rng.uniform(-0.05, 0.05, x.shape), 0, 1)
            ep = xp**2 / (xp**2).max()
            sens.append(np.sqrt(((ep - e) ** 2).sum()) / np.sqrt((e**2).sum()))
            lip.append(np.sqrt(((ep - e) ** 2).sum()) / np.sqrt(((xp - x) ** 2).sum()))
        assert res["max_sensitivity"].values[i] == pytest.approx(max(sens), rel=1e-10)
        assert res["local_lipschitz"].values[i] == pytest.approx(max(lip), rel=1e-10)
    assert res["max_sensitivity"].curves.shape == (2, 3)
    assert not res["max_sensitivity"].higher_is_better and res["local_lipschitz"].method == "squares"


def test_random_maps_are_less_robust_than_lrp(small_model):
    model, images = small_model
    lrp = robustness(model, images, "lrp", samples=2, radius=0.02)["max_sensitivity"]
    rnd = robustness(model, images, "random", samples=2, radius=0.02)["max_sensitivity"]
    assert lrp.method == "lrp" and rnd.method == "random"
    assert (rnd.values > lrp.values).all(), (rnd.values, lrp.values)
    assert rnd.mean > 0.5  # independent uniform maps: ||u - v|| / ||u|| is about 0.7


def test_a_callable_explainer_returning_wrong_maps_is_refused(small_model):
    model, images = small_model
    targets = resolve_targets(model, images)
    assert list(targets) == list(model.predict(images))
    with pytest.raises(ValueError, match="one \\(H, W\\) map per image"):
        explain_maps(model, images, lambda m, ims, t: [np.zeros((3, 3))] * len(ims))
    with pytest.raises(ValueError, match="unknown explainer"):
        explain_maps(model, images, "gradcam")


# ------------------------------------------------------------------ generated data


@pytest.mark.parametrize("method", ["lrp", "occlusion"])
def test_targets_one_per_image_equal_one_call_per_image(small_model, method):
    model, images = small_model
    per_image = [0, 1]
    got = explain_maps(model, images, method, targets=per_image)
    for image, target, heatmap in zip(images, per_image, got):
        np.testing.assert_array_equal(heatmap, explain_maps(model, [image], method, target=target)[0])
    assert not np.allclose(got[0], explain_maps(model, images[:1], method, target=1)[0])
    with pytest.raises(ValueError, match="not both"):
        explain_maps(model, images, method, target=1, targets=per_image)


def test_stamp_relevance_mass_of_lrp_is_far_above_a_random_maps():
    train = generate(0, 30, 0.5, signal=0.8)
    test = [s for s in generate(1000, 20, 1.0, signal=0.8) if s.has_artefact]
    model = Pipeline(
        [
            (
                "sift",
                DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"),
                HardAssignment(KMeansVocabulary(32, random_state=0)),
            )
        ],
        KernelSVC("hik", C=1.0),
        random_state=0,
    ).fit([s.image for s in train], [s.label for s in train])
    images, masks = [s.image for s in test], [s.artefact_mask() for s in test]
    lrp = relevance_mass_accuracy(explain_maps(model, images, "lrp", target=1), masks, method="lrp")
    rnd = relevance_mass_accuracy(explain_maps(model, images, "random", target=1), masks, method="random")
    area = np.mean([m.mean() for m in masks])
    assert rnd.mean == pytest.approx(area, abs=0.02)  # a random map's share is the stamp's area
    diff, sem, n = lrp.paired_difference(rnd)
    assert n == len(test) >= 15
    assert diff > 3 * sem and lrp.mean >= 1.5 * rnd.mean, (lrp.mean, rnd.mean, sem)
